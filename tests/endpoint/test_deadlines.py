"""Deadlines (jobs/deadlines.py): asyncio.timeout()'s behaviour with one timer for every block.

The loop's clock is moved by hand (`loop.time` patched on the running loop), so no test waits
for real time to pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tokenflow_tui.endpoint.deadlines import Deadlines

TIMEOUT_S = 10.0


@pytest.fixture
async def advance() -> Callable[[float], object]:
    """Moves the running loop's clock forward by `seconds`, then lets due timers and tasks run."""
    loop = asyncio.get_running_loop()
    real_time = loop.time
    offset = 0.0
    loop.time = lambda: real_time() + offset  # type: ignore[method-assign]

    async def move(seconds: float) -> None:
        nonlocal offset
        offset += seconds
        for _ in range(5):  # the timer, the cancelled task's step, its caller's step
            await asyncio.sleep(0)

    yield move
    del loop.time


async def blocked(deadlines: Deadlines, entered: asyncio.Event, release: asyncio.Event) -> str:
    with deadlines:
        entered.set()
        await release.wait()
    return "finished"


async def test_a_block_that_ends_in_time_is_untouched(advance):
    deadlines = Deadlines(TIMEOUT_S)
    entered, release = asyncio.Event(), asyncio.Event()
    task = asyncio.ensure_future(blocked(deadlines, entered, release))
    await entered.wait()
    await advance(TIMEOUT_S - 1)
    release.set()
    assert await task == "finished"
    await advance(TIMEOUT_S)  # the deadline passes after the block: nothing is cancelled late
    assert task.cancelling() == 0 and deadlines._due == {}


async def test_a_block_past_its_deadline_raises_timeout_and_takes_its_cancel_back(advance):
    deadlines = Deadlines(TIMEOUT_S)
    entered = asyncio.Event()
    task = asyncio.ensure_future(blocked(deadlines, entered, asyncio.Event()))
    await entered.wait()
    await advance(TIMEOUT_S + 0.01)
    assert task.done()
    with pytest.raises(TimeoutError):
        task.result()
    assert task.cancelling() == 0 and deadlines._expired == set()


async def test_only_the_blocks_past_their_deadline_time_out(advance):
    deadlines = Deadlines(TIMEOUT_S)
    first, second = asyncio.Event(), asyncio.Event()
    early = asyncio.ensure_future(blocked(deadlines, first, asyncio.Event()))
    await first.wait()
    await advance(TIMEOUT_S / 2)
    late = asyncio.ensure_future(blocked(deadlines, second, asyncio.Event()))
    await second.wait()
    await advance(TIMEOUT_S / 2 + 0.01)
    assert isinstance(early.exception(), TimeoutError) and not late.done()
    await advance(TIMEOUT_S / 2)
    assert isinstance(late.exception(), TimeoutError)


async def test_a_cancel_from_elsewhere_stays_a_cancel(advance):
    deadlines = Deadlines(TIMEOUT_S)
    entered = asyncio.Event()
    task = asyncio.ensure_future(blocked(deadlines, entered, asyncio.Event()))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines._due == {}


async def test_a_cancel_from_elsewhere_at_the_deadline_is_not_turned_into_a_timeout(advance):
    deadlines = Deadlines(TIMEOUT_S)
    entered = asyncio.Event()
    task = asyncio.ensure_future(blocked(deadlines, entered, asyncio.Event()))
    await entered.wait()
    loop = asyncio.get_running_loop()
    # due just after the deadline: both cancels reach the task before it runs again
    loop.call_at(loop.time() + TIMEOUT_S + 0.005, task.cancel)
    await advance(TIMEOUT_S + 0.01)
    assert task.cancelled() and deadlines._expired == set()


async def test_deadlines_are_reused_after_every_block_has_left(advance):
    deadlines = Deadlines(TIMEOUT_S)
    for _ in range(2):
        entered = asyncio.Event()
        task = asyncio.ensure_future(blocked(deadlines, entered, asyncio.Event()))
        await entered.wait()
        await advance(TIMEOUT_S + 0.01)
        assert isinstance(task.exception(), TimeoutError)


def test_a_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout_s must be > 0, got 0"):
        Deadlines(0)


def test_one_deadlines_serves_blocks_on_one_loop_after_another():
    deadlines = Deadlines(0.01)  # a real 10 ms: each loop's own timer must fire

    async def expires() -> bool:
        try:
            with deadlines:
                await asyncio.sleep(TIMEOUT_S)
        except TimeoutError:
            return True
        return False

    # the second loop's block is timed on the second loop, not on the (closed) first one
    assert asyncio.run(expires()) is True
    assert asyncio.run(expires()) is True
    assert deadlines._due == {}


def test_entering_outside_a_task_is_refused():
    deadlines = Deadlines(TIMEOUT_S)

    def enter() -> None:
        with deadlines:
            pass

    async def from_a_callback() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def call() -> None:
            try:
                enter()
            except RuntimeError as error:
                done.set_result(str(error))

        loop.call_soon(call)
        assert await done == "Deadlines must be entered inside an asyncio task"

    asyncio.run(from_a_callback())

"""The engine's ledger and bounds: attempt hooks, waiting apart from in flight, max_attempts, a handler that
never awaits, and what a payload says (failed, usage)."""

from __future__ import annotations

import asyncio

import pytest

from tokenflow import ActionContinue, ActionDone, TokenFlowTask


async def spin(trajectory):
    """Never awaits: asks for another attempt every time."""
    return ActionContinue(trajectory.last().request_params), trajectory.length()


async def test_max_attempts_ends_the_request_as_failed_at_the_attempt_that_reaches_it():
    task = TokenFlowTask(spin, ["a", "b"], max_attempts=3)
    task.run(2)
    results = await task.wait_for_done()
    assert [r.failure for r in results] == ["too_many_attempts"] * 2
    assert [r.request_trajectory.length() for r in results] == [3, 3]
    assert [r.request_trajectory.last().result for r in results] == [3, 3]  # the handler's last result kept
    assert (task.stats().done, task.stats().failed, task.stats().attempts) == (0, 2, 6)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3"])
def test_max_attempts_must_be_a_whole_number_of_one_or_more(bad):
    with pytest.raises(ValueError, match="max_attempts must be a whole number ≥ 1"):
        TokenFlowTask(spin, [1], max_attempts=bad)


async def test_a_handler_that_never_awaits_lets_the_loop_go_round():
    ticks = 0
    stop = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = TokenFlowTask(spin, [0])  # unbounded, as the seed: it runs until stopped
    beside = asyncio.ensure_future(ticker())
    task.run(1)
    for _ in range(50):  # each turn of this test is a turn of the loop, which the worker must allow
        await asyncio.sleep(0)
    assert ticks >= 40 and task.stats().attempts >= 64
    await task.hard_stop()
    stop.set()
    await beside
    assert task.state == "paused" and [r.id for r in task.waiting()] == [0]


async def test_the_attempt_hooks_see_each_attempt_sent_and_ended_with_its_result_and_payload():
    heard = []
    release = asyncio.Event()

    async def handler(trajectory):
        if trajectory.length() == 1:
            return ActionContinue("again"), "first", {"usage": {"prompt_tokens": 1}}
        await release.wait()
        return ActionDone(), "second", None

    def started(request):
        heard.append(("started", request.id, task.sending(), task.attempt_sent_at() is not None))

    def ended(request, payload):
        last = request.request_trajectory.last()
        heard.append(("ended", request.id, last.result, type(last.action).__name__, payload))

    task = TokenFlowTask(handler, ["x"], attempt_started=started, attempt_ended=ended)
    task.run(1)
    await asyncio.sleep(0)
    while not task.in_flight():
        await asyncio.sleep(0)
    await task.hard_stop()  # the second attempt is cancelled: ended with no result, it runs again
    task.run(1)
    release.set()
    await task.wait_for_done()
    assert heard == [
        ("started", 0, 1, True),  # sent: counted in flight, and the hook knows when
        ("ended", 0, "first", "ActionContinue", {"usage": {"prompt_tokens": 1}}),
        ("started", 0, 1, True),
        ("ended", 0, None, "NoneType", None),
        ("started", 0, 1, True),
        ("ended", 0, "second", "ActionDone", None),
    ]


async def test_attempt_sent_at_tells_a_hook_inside_the_attempt_when_it_was_sent():
    seen = []

    async def handler(trajectory):
        seen.append(task.attempt_sent_at())
        return ActionDone(), None

    task = TokenFlowTask(handler, [1])
    task.run(1)
    await task.wait_for_done()
    assert len(seen) == 1 and seen[0] is not None and task.attempt_sent_at() is None


async def test_a_request_held_back_by_before_attempt_is_waiting_with_what_for_then_in_flight_once_sent():
    opened = asyncio.Event()
    release = asyncio.Event()

    async def gate(request):
        request.waiting_for = "the rate limit"
        await opened.wait()

    async def handler(trajectory):
        await release.wait()
        return ActionDone(), None

    task = TokenFlowTask(handler, [0, 1, 2], before_attempt=gate)
    task.run(2)
    while len(task.held_back()) < 2:
        await asyncio.sleep(0)
    stats = task.stats()
    assert (stats.in_flight, stats.waiting, stats.queued) == (0, 2, 1)
    assert [r.waiting_for for r in task.held_back()] == ["the rate limit"] * 2
    opened.set()
    while len(task.in_flight()) < 2:
        await asyncio.sleep(0)
    stats = task.stats()
    assert (stats.in_flight, stats.waiting, stats.queued) == (2, 0, 1)
    assert [r.waiting_for for r in task.in_flight()] == [None, None]
    release.set()
    assert len(await task.wait_for_done()) == 3


async def test_a_payload_that_says_failed_counts_the_request_as_failed():
    async def handler(trajectory):
        n = trajectory.last().request_params
        return ActionDone(), n, ({"failed": "no answer"} if n % 2 else {"usage": {"prompt_tokens": 2}})

    task = TokenFlowTask(handler, list(range(6)))
    task.run(2)
    results = await task.wait_for_done()
    assert (task.stats().done, task.stats().failed) == (3, 3)
    assert [r.request_trajectory.last().payload for r in results[:2]] == [
        {"usage": {"prompt_tokens": 2}},
        {"failed": "no answer"},
    ]

"""A task that keeps its finished requests freezes what survives a full collection while it runs."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tokenflow import ActionDone, TokenFlowRequestTrajectory, TokenFlowTask


@pytest.fixture
def unfrozen():
    if gc.get_freeze_count():
        pytest.skip("something in this process froze objects before the test")
    yield
    gc.unfreeze()


def holding_handler(release: asyncio.Event):
    """Ids below 3 finish at once; the others wait for `release`."""

    async def handler(trajectory: TokenFlowRequestTrajectory):
        if trajectory.last().request_params >= 3:
            await release.wait()
        await asyncio.sleep(0)
        return ActionDone(), trajectory.last().request_params * 10

    return handler


async def until(condition) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def in_oldest_generation(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects(generation=2))


async def test_kept_requests_are_frozen_by_a_full_collection_and_unfrozen_when_done(unfrozen):
    release = asyncio.Event()
    task = TokenFlowTask(holding_handler(release), list(range(5)))
    task.run(5)
    await until(lambda: len(task.finished()) == 3)
    gc.collect()
    kept = task.finished()[0]
    assert gc.get_freeze_count() > 0
    assert not in_oldest_generation(kept)
    release.set()
    results = await task.wait_for_done()
    assert [r.request_trajectory.last().result for r in results] == [0, 10, 20, 30, 40]
    assert gc.get_freeze_count() == 0
    assert in_oldest_generation(kept)


async def test_a_task_with_a_sink_freezes_nothing(unfrozen):
    release = asyncio.Event()
    seen: list[int] = []
    task = TokenFlowTask(holding_handler(release), list(range(5)), sink=lambda r: seen.append(r.id))
    task.run(5)
    await until(lambda: len(seen) == 3)
    gc.collect()
    assert gc.get_freeze_count() == 0
    release.set()
    await task.wait_for_done()
    assert sorted(seen) == [0, 1, 2, 3, 4]


async def test_a_soft_stop_unfreezes_and_a_new_run_freezes_again(unfrozen):
    release = asyncio.Event()
    task = TokenFlowTask(holding_handler(release), list(range(5)))
    task.run(5)
    await until(lambda: len(task.finished()) == 3)
    release.set()
    await task.soft_stop()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gc.get_freeze_count() == 0


async def test_objects_frozen_before_the_task_stay_frozen(unfrozen):
    before = [object()]
    gc.freeze()
    release = asyncio.Event()
    task = TokenFlowTask(holding_handler(release), list(range(5)))
    task.run(5)
    await until(lambda: len(task.finished()) == 3)
    gc.collect()
    release.set()
    results = await task.wait_for_done()
    assert len(results) == 5
    assert not in_oldest_generation(before)
    assert not in_oldest_generation(results[0])

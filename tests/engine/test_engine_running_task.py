"""engine.running_task.current_task answers as asyncio.current_task does."""

from __future__ import annotations

import asyncio

import pytest

from tokenflow_tui.engine.running_task import current_task


async def test_it_is_the_task_running_now_in_each_of_several_tasks():
    async def mine() -> bool:
        await asyncio.sleep(0)
        return current_task() is asyncio.current_task()

    tasks = [asyncio.create_task(mine()) for _ in range(3)]
    assert await asyncio.gather(*tasks) == [True, True, True]
    assert current_task() is asyncio.current_task()


def test_without_a_running_loop_it_raises_as_asyncio_does():
    with pytest.raises(RuntimeError, match="no running event loop"):
        current_task()

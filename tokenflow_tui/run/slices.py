"""Long work on the run's event loop a slice at a time, so that a million rows never hold the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

# a slice's budget, then as long a rest: such work takes at most half the loop, and adds at most
# a slice to its lag (DESIGN §5 asks p99 ≤ 100 ms)
SLICE_S = 0.005

Work = Iterator[None]  # a generator that yields after each small unit of work (well under a slice)


def step(work: Work, budget_s: float, now: Callable[[], float] = time.perf_counter) -> bool:
    """Advance `work` for about `budget_s`; True once it is exhausted."""
    deadline = now() + budget_s
    for _ in work:
        if now() >= deadline:
            return False
    return True


async def run_in_slices(work: Work, slice_s: float = SLICE_S) -> None:
    while not step(work, slice_s):
        await asyncio.sleep(slice_s)


def start_in_slices(work: Work, on_done: Callable[[], None]) -> asyncio.Task[None] | None:
    """Run `work` in slices on the running loop and call `on_done` after; with no loop running, at once."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        for _ in work:
            pass
        on_done()
        return None

    async def go() -> None:
        await run_in_slices(work)
        on_done()

    return loop.create_task(go())

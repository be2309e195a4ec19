"""Engine overhead: no-op requests through TokenFlowTask, beside a bare asyncio worker pool.

`measure()` runs each in a fresh interpreter (`python -m tokenflow_tui.bench.engine KIND N WORKERS`),
so the peak RSS of one is not the other's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass

from .child import BenchError, last_line, run_child

KINDS = ("engine", "bare")


@dataclass(frozen=True, slots=True)
class EngineFigures:
    kind: str  # "engine" (TokenFlowTask) or "bare" (an asyncio.Queue and N tasks)
    requests: int
    requests_per_s: float
    peak_rss_mb: float


def measure(kind: str, requests: int, workers: int, timeout_s: float = 300.0) -> EngineFigures:
    if kind not in KINDS:
        raise ValueError(f"measure: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    argv = [sys.executable, "-m", "tokenflow_tui.bench.engine", kind, str(requests), str(workers)]
    run = run_child(argv, timeout_s=timeout_s)
    if run.code != 0:
        raise BenchError(f"the {kind} measurement failed: {last_line(run.stderr)}")
    seconds = json.loads(run.stdout)["seconds"]
    return EngineFigures(kind, requests, requests / seconds, run.peak_rss_mb)


async def _engine(requests: int, workers: int) -> float:
    from ..engine import ActionDone, TokenFlowTask

    async def handler(trajectory: object) -> tuple[ActionDone, None]:
        await asyncio.sleep(0)  # a real handler awaits at least once
        return ActionDone(), None

    finished = 0

    def sink(request: object) -> None:
        nonlocal finished
        finished += 1

    # streamed in and out, as the job runner does: nothing of a finished request is kept
    task = TokenFlowTask(handler, requests=((i, None) for i in range(requests)), sink=sink)
    started = time.perf_counter()
    task.run(workers)
    await task.wait_for_done()
    seconds = time.perf_counter() - started
    if finished != requests:
        raise RuntimeError(f"the engine finished {finished} of {requests} requests")
    return seconds


async def _bare(requests: int, workers: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - started


def main(argv: list[str]) -> None:
    kind, requests, workers = argv[0], int(argv[1]), int(argv[2])
    probe = _engine if kind == "engine" else _bare
    print(json.dumps({"seconds": asyncio.run(probe(requests, workers))}))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Engine overhead: no-op requests through TokenFlowTask, beside a bare asyncio worker pool.

Two paths through the engine: "engine" streams requests in and finished ones out to a sink, as the job
runner does; "seed" is the seed's own API, a list of params in and `wait_for_done()`'s list of every
finished request out (what that list costs per request is measured too). `measure()` runs each in a
fresh interpreter (`python -m tokenflow_tui.bench.engine KIND N WORKERS`), so the peak RSS of one is not
the other's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from dataclasses import dataclass

from .child import BenchError, last_line, run_child

KINDS = ("engine", "seed", "bare")


@dataclass(frozen=True, slots=True)
class EngineFigures:
    kind: str  # "engine" (TokenFlowTask with a sink), "seed" (the seed's API) or "bare" (an asyncio.Queue and N tasks)
    requests: int
    requests_per_s: float
    peak_rss_mb: float
    kept_bytes_per_request: float | None = None  # "seed": the growth of RSS for the list of finished requests


def measure(kind: str, requests: int, workers: int, timeout_s: float = 300.0) -> EngineFigures:
    if kind not in KINDS:
        raise ValueError(f"measure: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    argv = [sys.executable, "-m", "tokenflow_tui.bench.engine", kind, str(requests), str(workers)]
    run = run_child(argv, timeout_s=timeout_s)
    if run.code != 0:
        raise BenchError(f"the {kind} measurement failed: {last_line(run.stderr)}")
    figures = json.loads(run.stdout)
    return EngineFigures(
        kind, requests, requests / figures["seconds"], run.peak_rss_mb, figures.get("kept_bytes_per_request")
    )


async def _engine(requests: int, workers: int) -> dict[str, float]:
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
    return {"seconds": seconds}


async def _seed(requests: int, workers: int) -> dict[str, float | None]:
    """The seed's way: a list of params, `run(n_workers)`, `await wait_for_done()` for every result."""
    from ..engine import ActionDone, TokenFlowTask

    async def handler(trajectory: object) -> tuple[ActionDone, None]:
        await asyncio.sleep(0)
        return ActionDone(), None

    params = list(range(requests))
    gc.collect()
    before = _rss_bytes()
    started = time.perf_counter()
    task = TokenFlowTask(request_fn=handler, request_params=params)
    task.run(n_workers=workers)
    results = await task.wait_for_done()
    seconds = time.perf_counter() - started
    if len(results) != requests or results[-1].request_trajectory.last().action != ActionDone():
        raise RuntimeError(f"the engine gave {len(results)} results for {requests} requests")
    gc.collect()
    kept = (_rss_bytes() - before) / requests if before else None
    return {"seconds": seconds, "kept_bytes_per_request": kept}


def _rss_bytes() -> int:
    """The resident set size now (Linux; 0 elsewhere, where the kept bytes are not told)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


async def _bare(requests: int, workers: int) -> dict[str, float]:
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
    return {"seconds": time.perf_counter() - started}


def main(argv: list[str]) -> None:
    kind, requests, workers = argv[0], int(argv[1]), int(argv[2])
    probe = {"engine": _engine, "seed": _seed, "bare": _bare}[kind]
    print(json.dumps(asyncio.run(probe(requests, workers))))


if __name__ == "__main__":
    main(sys.argv[1:])

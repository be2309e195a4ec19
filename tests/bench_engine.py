"""Engine overhead: 1M no-op requests through 64 workers, beside a bare asyncio worker pool.

Run: python -m pytest -m benchmark -s tests/bench_engine.py
Each measurement runs in a fresh interpreter so peak RSS belongs to it alone.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.benchmark

PROGRAM = r"""
import asyncio, json, resource, sys, time
kind, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

async def engine():
    from tokenflow import TokenFlowTask, ActionDone
    async def handler(trajectory):
        await asyncio.sleep(0)
        return ActionDone(), None
    finished = 0
    def sink(request):
        nonlocal finished
        finished += 1
    task = TokenFlowTask(handler, requests=((i, None) for i in range(n)), sink=sink)
    started = time.perf_counter()
    task.run(workers)
    await task.wait_for_done()
    assert finished == n
    return time.perf_counter() - started

async def bare():
    queue = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    async def worker():
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await asyncio.sleep(0)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - started

seconds = asyncio.run(engine() if kind == "engine" else bare())
print(json.dumps({"kind": kind, "n": n, "per_s": n / seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(kind: str, n: int, workers: int = 64) -> dict:
    out = subprocess.run([sys.executable, "-c", PROGRAM, kind, str(n), str(workers)],
                         capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout)


def test_engine_overhead_against_a_bare_pool():
    bare = measure("bare", 1_000_000)
    engine = measure("engine", 1_000_000)
    small = measure("engine", 100_000)
    print()
    print(f"bare asyncio pool : {bare['per_s']:>10,.0f} requests/s")
    print(f"TokenFlowTask     : {engine['per_s']:>10,.0f} requests/s  ({engine['per_s'] / bare['per_s']:.0%} of bare)")
    print(f"peak RSS, streaming: {small['peak_rss_mb']:.1f} MB at 100k requests, {engine['peak_rss_mb']:.1f} MB at 1M")
    assert engine["per_s"] >= 250_000
    assert engine["peak_rss_mb"] < small["peak_rss_mb"] + 10

"""A job across Ray shards beside the single-machine runner, against one simulator (issue 16's figures).

    python -m pytest tests/bench/bench_cluster.py -m benchmark -s

Prints: client CPU per request through one shard (the shard actor's process CPU over the run) beside
the single-machine runner (a child process's CPU over `runner.run()`), the control round trip from
the driver to every shard, requests/s with 1, 2 and 3 shards, and the peak RSS of each shard's
process. A local Ray instance (one node: on one machine the ceiling is its cores, not the shards).
BENCH_CLUSTER_REQUESTS sets the size (default 4,000).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.benchmark

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # as tokenflow_tui.cluster does: nothing leaves the machine
ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'tokenflow-tui[ray]'")

from run_helpers import write_input, write_job  # noqa: E402
from suite_helpers import ThreadedSimulator  # noqa: E402

from tokenflow_tui.cluster.driver import ClusterRun  # noqa: E402
from tokenflow_tui.job.reader import load_job  # noqa: E402
from tokenflow_tui.sim import SimulatorConfig  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_CLUSTER_REQUESTS", "4000"))
WORKERS = 64

SINGLE = r"""
import asyncio, sys, time
from pathlib import Path
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.runner import JobRunner
runner = JobRunner(load_job(Path(sys.argv[1])))
runner.open()
cpu, wall = time.process_time(), time.monotonic()
code = asyncio.run(runner.run())
print(code, time.process_time() - cpu, time.monotonic() - wall)
runner.close()
"""


def _job(directory: Path, base_url: str) -> Path:
    directory.mkdir()
    write_input(directory / "prompts.jsonl", REQUESTS)
    return write_job(
        directory,
        {
            "job": {"name": "bench", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"base_url": base_url, "model": "m"},
            "request": {"params": {"max_tokens": 16}},
            "workers": {"count": WORKERS},
        },
    )


def _on_shards(path: Path, shards: int) -> dict[str, Any]:
    run = ClusterRun(load_job(path), shards=shards)
    run.open()

    async def drive() -> dict[str, Any]:
        await run._poll_all()  # the shards start: the figures count from here
        first = [reply["cpu_s"] for reply in run.shard_replies() if reply]
        wall = time.monotonic()
        assert await run.run() == 0
        elapsed = time.monotonic() - wall
        replies = [reply for reply in run.shard_replies() if reply]
        trips = []
        for _ in range(20):
            at = time.perf_counter()
            await run._poll_all()  # one snapshot round: driver → every shard → driver
            trips.append(time.perf_counter() - at)
        trips.sort()
        return {
            "elapsed": elapsed,
            "cpu": [r["cpu_s"] - c for r, c in zip(replies, first)],
            "rss_mb": [r["max_rss_kb"] / 1024 for r in replies],
            "trip_ms": (trips[len(trips) // 2] * 1000, trips[-2] * 1000),
        }

    figures = asyncio.run(drive())
    run.close()
    return figures


def _single(directory: Path, base_url: str) -> float:
    """The single-machine runner in a child process: prints and returns its CPU per request (ms)."""
    child = subprocess.run(
        [sys.executable, "-c", SINGLE, str(_job(directory, base_url))], capture_output=True, text=True, check=True
    )
    _, cpu, wall = child.stdout.split()
    per_request = float(cpu) / REQUESTS * 1000
    print(f"\nsingle machine: {REQUESTS / float(wall):,.0f} requests/s, {per_request:.3f} ms CPU/request")
    return per_request


def test_cluster_figures(tmp_path: Path) -> None:
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        with ThreadedSimulator(SimulatorConfig(latency_ms=0, seed=1)) as sim:
            # the single-machine runner before and after the shards: the machine's load moves the figures
            single = [_single(tmp_path / "single-before", sim.base_url)]
            for shards in (1, 2, 3):
                f = _on_shards(_job(tmp_path / f"shards{shards}", sim.base_url), shards)
                per_request = sum(f["cpu"]) / REQUESTS * 1000
                print(
                    f"{shards} shard(s): {REQUESTS / f['elapsed']:,.0f} requests/s, {per_request:.3f} ms CPU/request, "
                    f"snapshot round trip p50 {f['trip_ms'][0]:.1f} ms (p95 {f['trip_ms'][1]:.1f} ms), "
                    "peak RSS per shard " + ", ".join(f"{mb:.0f} MB" for mb in f["rss_mb"])
                )
            single.append(_single(tmp_path / "single-after", sim.base_url))
    finally:
        ray.shutdown()

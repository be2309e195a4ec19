"""A million requests through the job runner (`tokenflow run --headless`, a no-op `[handler]`).

    python -m pytest tests/bench/bench_runner.py -m benchmark -s

DESIGN §5: peak RSS ≤ 150 MB for a 1M-request job, and ≤ 3 s before the first new request when a
run with 1M results is resumed. The job has 1,000,000 + 10,000 requests: the first run stops itself
(SIGINT, as Ctrl-C would) once its handler reaches request 1,000,000, and is measured for memory;
the second run resumes, and is measured from its start to its handler's first call.
BENCH_RUNNER_REQUESTS sets the size (default 1,000,000).
"""

from __future__ import annotations

import os
import sys
import time
import tomllib
from pathlib import Path

import orjson
import pytest

from tokenflow_tui.bench.child import run_child

pytestmark = pytest.mark.benchmark

REQUESTS = int(os.environ.get("BENCH_RUNNER_REQUESTS", "1000000"))
MORE = 10_000
MAX_RSS_MB = 150.0
MAX_RESUME_S = 3.0

HANDLER = r"""
import asyncio, os, signal, time
from tokenflow import ActionDone

STOP_AT = int(os.environ.get("BENCH_STOP_AT", "-1"))
FIRST_CALL = os.environ.get("BENCH_FIRST_CALL_FILE")


async def handler(trajectory):
    global FIRST_CALL
    if FIRST_CALL:
        with open(FIRST_CALL, "w") as out:
            out.write(repr(time.time()))
        FIRST_CALL = None
    if trajectory.last().request_params["i"] == STOP_AT:
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the run finishes what is in flight and saves
    await asyncio.sleep(0)  # a handler that never yields would hold the loop (and Ctrl-C) off
    return ActionDone(), "ok"
"""


def write_job(folder: Path, requests: int) -> Path:
    with open(folder / "input.jsonl", "wb") as lines:
        lines.writelines(orjson.dumps({"i": i}) + b"\n" for i in range(requests))
    (folder / "noop.py").write_text(HANDLER)
    job = folder / "job.toml"
    job.write_text(
        '[job]\nname = "million"\ninput = "input.jsonl"\noutput = "run"\n\n'
        '[handler]\npath = "noop.py:handler"\n\n[workers]\ncount = 64\n'
    )
    return job


def run(job: Path, **env: str):  # type: ignore[no-untyped-def]
    os.environ.update(env)
    try:
        return run_child(
            [sys.executable, "-m", "tokenflow_tui", "run", str(job), "--headless"], timeout_s=1800, cwd=str(job.parent)
        )
    finally:
        for name in env:
            del os.environ[name]


@pytest.mark.timeout(3600)
def test_a_million_requests_through_the_runner_then_resume(tmp_path: Path) -> None:
    job = write_job(tmp_path, REQUESTS + MORE)

    first = run(job, BENCH_STOP_AT=str(REQUESTS))
    state = tomllib.loads((tmp_path / "run" / "state.toml").read_text())
    finished = state["done"] + state["failed"]
    print(
        f"\nfirst run: {finished:,} requests in {first.wall_s:.1f} s ({finished / state['elapsed_s']:,.0f}/s "
        f"running), exit {first.code}, CPU {first.cpu_s:.1f} s, peak RSS {first.peak_rss_mb:.0f} MB"
    )
    assert first.code == 130, first.stderr
    assert REQUESTS <= finished < REQUESTS + MORE

    first_call = tmp_path / "first_call"
    started = time.time()
    second = run(job, BENCH_FIRST_CALL_FILE=str(first_call))
    resume_s = float(first_call.read_text()) - started
    state = tomllib.loads((tmp_path / "run" / "state.toml").read_text())
    print(
        f"resume with {finished:,} results: first new request {resume_s:.2f} s after the start "
        f"(interpreter start included); the run took {second.wall_s:.1f} s, peak RSS {second.peak_rss_mb:.0f} MB"
    )
    assert second.code == 0, second.stderr
    assert state["done"] == REQUESTS + MORE
    assert first.peak_rss_mb <= MAX_RSS_MB
    assert resume_s <= MAX_RESUME_S

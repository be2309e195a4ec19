"""Shared helpers for tests that run whole jobs: job files, inputs, reading results, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w


def write_input(path: Path, count: int, start: int = 0) -> list[str]:
    """`count` prompt lines with ids q<i>; returns the prompts."""
    prompts = [f"tell me about item {i}" for i in range(start, start + count)]
    with path.open("w") as out:
        for i, prompt in enumerate(prompts, start):
            out.write(json.dumps({"id": f"q{i}", "prompt": prompt}) + "\n")
    return prompts


def write_job(directory: Path, sections: dict[str, Any], name: str = "job.toml") -> Path:
    path = directory / name
    path.write_text(tomli_w.dumps(sections))
    return path


def simulated_job(
    directory: Path,
    count: int,
    *,
    fail: dict[str, float] | None = None,
    latency_ms: float = 5,
    workers: int = 32,
    max_attempts: int = 3,
    timeout_s: float = 2.0,
    seed: int = 1,
) -> Path:
    write_input(directory / "prompts.jsonl", count)
    simulator: dict[str, Any] = {"latency_ms": latency_ms, "seed": seed}
    if fail:
        simulator["fail"] = fail
    return write_job(
        directory,
        {
            "job": {"name": "t", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"simulate": True, "timeout_s": timeout_s, "simulator": simulator},
            "request": {"params": {"max_tokens": 64}},
            "workers": {"count": workers},
            "retry": {"max_attempts": max_attempts, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
        },
    )


async def until(predicate: Callable[[], bool], limit: int = 2000) -> None:
    """Let the loop run until `predicate()` holds (at most `limit` short turns, then fail)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


# what sleeps on a running job's clock beside its workers: the periodic save, the periodic write and
# traffic control's pause watcher (a job whose workers all wait their turn has workers + 3 sleepers)
RUN_SLEEPERS = 3


def limited_runner(directory: Path, base_url: str, count: int, workers: int, limits: dict[str, Any], clock: Any) -> Any:
    """A JobRunner, opened, on `clock`: `count` prompts to `base_url` through `workers` workers under `limits`."""
    from tokenflow_tui.job.reader import load_job
    from tokenflow_tui.run.runner import JobRunner

    write_input(directory / "prompts.jsonl", count)
    job = write_job(
        directory,
        {
            "job": {"name": "limits", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"base_url": base_url, "model": "m"},
            "request": {"params": {"max_tokens": 16}},
            "workers": {"count": workers},
            "limits": limits,
        },
    )
    runner = JobRunner(load_job(job), save_interval_s=3600, clock=clock)
    runner.open()
    return runner


async def advance_settled(clock: Any, seconds: float, steps: int, settled: Callable[[], bool]) -> None:
    """Move a ManualClock in even steps, each time until `settled()`: what the step released has finished."""
    for _ in range(steps):
        clock.advance(seconds / steps)
        await until(settled)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every line of results.jsonl as JSON (a line that is not raises)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def tokenflow(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command line, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "tokenflow_tui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def start_tokenflow(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tokenflow_tui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


GATED_HANDLER = """
import asyncio
import run_helpers
from tokenflow import ActionContinue, ActionDone


async def handler(trajectory):
    params = trajectory.last().request_params
    if params.get("fail"):
        raise RuntimeError("no luck for " + params["prompt"])
    await run_helpers.GATE.wait()
    if params.get("retry") and trajectory.length() == 1:
        return ActionContinue(params), {"retrying": True}
    return ActionDone(), {"echo": params["prompt"]}
"""


class _Gate:
    """The gate the gated handler waits on; tests set or replace the event."""

    event = None

    async def wait(self) -> None:
        await self.event.wait()


GATE = _Gate()


def gated_job(directory: Path, lines: list[dict[str, Any]], workers: int = 2) -> Path:
    """A [handler] job whose handler waits on GATE before each attempt (a line with "fail" raises at once)."""
    (directory / "handler.py").write_text(GATED_HANDLER)
    with (directory / "in.jsonl").open("w") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    return write_job(
        directory,
        {
            "job": {"name": "gated", "input": "in.jsonl", "output": "out"},
            "handler": {"path": "handler.py:handler"},
            "workers": {"count": workers},
        },
    )

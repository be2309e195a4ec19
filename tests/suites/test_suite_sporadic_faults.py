"""Sporadic faults on a server with no rate limit must not throttle the job (issue 11 §1, DESIGN §5).

The job of the issue, run through the command line (`tokenflow run --headless`, the simulator in a
child process as `simulate = true` starts it): random 429s, 500s, resets and malformed bodies,
20 workers, `max_attempts = 2`, against the same job without the 429s. Random 429s are no limit:
nothing may be held or paced for them, and the throughput stays near that of the job without them.

The default test is the scaled version (a third of the latency, fewer requests, one seed); the
full version is a benchmark, three seeds, each at least 85 % of the job without 429s:
    python -m pytest -m benchmark -s tests/suites/test_suite_sporadic_faults.py
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from run_helpers import read_records, tokenflow, write_input, write_job

FAULTS = {"429": 0.05, "500": 0.05, "reset": 0.02, "malformed": 0.02}
WITHOUT_429 = {kind: share for kind, share in FAULTS.items() if kind != "429"}
STEADY_SHARE = 0.9  # the throughput is that of the first 90 % of the requests: the last ones wait out a
# Retry-After of 1 s on their own, a tail that says nothing of how fast the job went


@dataclass(frozen=True)
class Run:
    requests_per_s: float  # the first STEADY_SHARE of the requests, over the time they took (results.jsonl)
    lines: list[str]  # the headless progress lines

    def said(self, word: str) -> list[str]:
        return [line for line in self.lines if word in line]


def run_job(
    directory: Path, fail: dict[str, float], *, seed: int, count: int, latency_ms: float, timeout_s: float
) -> Run:
    directory.mkdir()
    write_input(directory / "prompts.jsonl", count)
    simulator = {"latency_ms": latency_ms, "jitter_ms": latency_ms / 3, "fail": fail, "seed": seed}
    job = write_job(
        directory,
        {
            "job": {"name": "sporadic", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"simulate": True, "model": "m", "simulator": simulator},
            "workers": {"count": 20},
            "retry": {"max_attempts": 2},
        },
    )
    try:
        done = tokenflow("run", str(job), "--headless", timeout=timeout_s)
    except subprocess.TimeoutExpired as slow:
        said = slow.stderr.decode() if isinstance(slow.stderr, bytes) else slow.stderr or ""
        pytest.fail(f"the job did not finish within {timeout_s:g} s; it said:\n{said[-600:]}")
    assert done.returncode == 0, done.stderr
    records = read_records(directory / "out" / "results.jsonl")
    assert len(records) == count
    return Run(steady_rate(records), done.stderr.splitlines())


def steady_rate(records: list[dict[str, Any]]) -> float:
    """Requests a second from the first attempt sent until STEADY_SHARE of the requests had finished."""
    first = min(record["attempts"][0]["started_at"] for record in records)
    ends = sorted(
        record["attempts"][-1]["started_at"] + record["attempts"][-1]["latency_ms"] / 1000 for record in records
    )
    finished = round(len(ends) * STEADY_SHARE)
    return finished / (ends[finished - 1] - first)


def compare(
    tmp_path: Path, seed: int, count: int, latency_ms: float, timeout_s: float, fail: dict[str, float] = FAULTS
) -> tuple[Run, Run, float]:
    """The job with `fail`, then without its 429s; (with, without, the first's throughput over the second's)."""
    same = {"seed": seed, "count": count, "latency_ms": latency_ms, "timeout_s": timeout_s}
    faults = run_job(tmp_path / f"faults-{seed}", fail, **same)
    clean = run_job(tmp_path / f"no429-{seed}", WITHOUT_429, **same)
    ratio = faults.requests_per_s / clean.requests_per_s
    print(
        f"\n[sporadic faults, seed {seed}] {faults.requests_per_s:.1f} requests/s with 429s, "
        f"{clean.requests_per_s:.1f} without: {ratio:.1%}; held in {len(faults.said('held'))} and paced in "
        f"{len(faults.said('paced'))} of {len(faults.lines)} progress lines"
    )
    return faults, clean, ratio


def test_random_429s_on_a_server_with_no_limit_neither_pace_nor_slow_the_job(tmp_path):
    # twice the 429s, so that four of eight at random come within the first few hundred answers
    # (without the fix: a pace, and a tenth of the speed from then on)
    faults, _, ratio = compare(tmp_path, seed=2, count=1500, latency_ms=100, timeout_s=45, fail={**FAULTS, "429": 0.1})
    assert faults.said("paced") == []
    assert ratio >= 0.6  # the margin below the benchmark's 85 % is for a machine shared with other work


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_full_scale_sporadic_faults_keep_85_percent_of_the_throughput(tmp_path, seed):
    faults, _, ratio = compare(tmp_path, seed=seed, count=2000, latency_ms=300, timeout_s=600)
    assert faults.said("paced") == []
    assert ratio >= 0.85

"""Rate limits: a simulator with a hidden limit that changes mid-run, and the job finding it by itself.

The default test is the scaled version: the limit counts requests per second instead of per minute
(the same sliding window, 60 times shorter), so three limits fit in about twenty seconds. The
full version, a real requests-per-minute limit over nine minutes, is a benchmark:
    python -m pytest -m benchmark -s tests/suites/test_suite_rate_limits.py
Each test prints its figures: per phase the limit, the rate reached and when, and the share of 429s.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from run_helpers import RUN_SLEEPERS, advance_settled, limited_runner, until, write_input, write_job

from tokenflow_tui.engine import ManualClock
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.sim import Simulator, SimulatorConfig


@dataclass(frozen=True)
class Phase:
    limit: int  # requests per window
    seconds: float


@dataclass
class Figures:
    limit_per_s: float
    ok_per_s: list[int]  # good answers in each second of the phase
    rate_limited: int

    def reach(self, last_s: int) -> float:
        """The rate of good answers over the phase's last seconds, as a share of the limit."""
        return sum(self.ok_per_s[-last_s:]) / last_s / self.limit_per_s

    def reached_after_s(self, share: float = 0.8, over_s: int = 2) -> int | None:
        """Seconds into the phase until the rate over `over_s` seconds first reached `share` of the limit."""
        for end in range(over_s, len(self.ok_per_s) + 1):
            if sum(self.ok_per_s[end - over_s : end]) / over_s >= share * self.limit_per_s:
                return end
        return None


async def run_phases(
    tmp_path: Path,
    phases: list[Phase],
    *,
    window_s: float,
    latency_ms: float,
    workers: dict[str, Any],
    limits: dict[str, Any] | None = None,
    headers: bool = False,
) -> tuple[list[Figures], JobRunner]:
    """A job of more requests than the phases can take, against a simulator whose limit follows the phases."""
    config = SimulatorConfig(
        latency_ms=latency_ms, rpm_limit=phases[0].limit, rate_window_s=window_s, ratelimit_headers=headers, seed=1
    )
    figures = []
    async with Simulator(config) as sim:
        write_input(tmp_path / "prompts.jsonl", round(sum(p.limit * p.seconds / window_s for p in phases) * 2) + 1000)
        job = write_job(
            tmp_path,
            {
                "job": {"name": "limits", "input": "prompts.jsonl", "output": "out"},
                "endpoint": {"base_url": sim.base_url, "model": "m", "timeout_s": 10},
                "request": {"params": {"max_tokens": 16}},
                "workers": workers,
                "retry": {"max_attempts": 20, "backoff_base_s": 0.05, "backoff_max_s": 2},
                **({"limits": limits} if limits else {}),
            },
        )
        runner = JobRunner(load_job(job), save_interval_s=3600)
        runner.open()
        running = asyncio.create_task(runner.run())
        outcomes = sim.stats.outcomes
        for phase in phases:
            sim.set_rate_limit(phase.limit)
            ok_per_s, limited_before = [], outcomes["rate_limited"]
            for _ in range(round(phase.seconds)):
                ok_before, started = outcomes["ok"], time.monotonic()
                await asyncio.sleep(1.0)
                ok_per_s.append(round((outcomes["ok"] - ok_before) / (time.monotonic() - started)))
            figures.append(Figures(phase.limit / window_s, ok_per_s, outcomes["rate_limited"] - limited_before))
        assert await asyncio.wait_for(runner.shutdown(), 30) == 130
        await asyncio.wait_for(running, 30)
    return figures, runner


def report(name: str, figures: list[Figures], last_s: int) -> float:
    ok = sum(sum(f.ok_per_s) for f in figures)
    limited = sum(f.rate_limited for f in figures)
    share = limited / (ok + limited)
    print(f"\n[{name}] 429 share {share:.2%} ({limited:,} of {ok + limited:,} answers)")
    for f in figures:
        print(
            f"  limit {f.limit_per_s:g}/s: reached {f.reach(last_s):.0%} over the last {last_s} s, "
            f"80 % after {f.reached_after_s()} s; 429s {f.rate_limited:,}; per second {f.ok_per_s}"
        )
    return share


async def test_the_adaptive_worker_count_finds_a_limit_that_changes_mid_run(tmp_path):
    # a limit per second; a round trip of 100 ms: 200/s needs 20 requests in flight, 100/s 10, 300/s 30
    phases = [Phase(200, 7), Phase(100, 7), Phase(300, 7)]
    # it samples real seconds: on a loaded machine (the rest of the suite on both cores) a run can fall
    # short by starvation alone, so a second run decides; the full-scale benchmark measures it for real
    for attempt in range(2):
        (tmp_path / f"run-{attempt}").mkdir()
        figures, runner = await run_phases(
            tmp_path / f"run-{attempt}",
            phases,
            window_s=1,
            latency_ms=100,
            workers={"count": 4, "adaptive": True, "min": 1, "max": 400},
        )
        share = report("adaptive, scaled", figures, last_s=4)
        reached = [f.reached_after_s() for f in figures]
        if (
            share < 0.05
            and all(f.reach(last_s=4) >= 0.8 for f in figures)
            and all(after is not None and after <= 6 for after in reached)
        ):
            break
    assert share < 0.05
    for f, after in zip(figures, reached):
        assert f.reach(last_s=4) >= 0.8
        assert after is not None and after <= 6
    assert runner.snapshot().traffic.cuts >= 3


async def test_a_requests_per_minute_limit_keeps_a_fixed_pool_under_the_hidden_limit(tmp_path):
    # 32 workers could send 640/s; the job's own limit of 6,000 a minute paces them at 100/s
    figures, runner = await run_phases(
        tmp_path,
        [Phase(150, 3)],
        window_s=1,
        latency_ms=50,
        workers={"count": 32},
        limits={"requests_per_minute": 6000},
    )
    report("requests_per_minute", figures, last_s=2)
    (f,) = figures
    assert f.rate_limited == 0
    assert 95 <= sum(f.ok_per_s[-2:]) / 2 <= 105
    assert runner.snapshot().traffic.requests_per_minute == 6000


async def test_tokens_per_minute_counts_what_the_server_reports(tmp_path):
    # about 12 tokens a request (usage), 21 estimated before sending (5 of prompt + max_tokens 16);
    # the job's clock is driven by hand, so the rate is exact whatever the machine's load
    workers = 32
    idle = workers + RUN_SLEEPERS  # every worker waits its turn at the limit
    clock = ManualClock()
    async with Simulator(SimulatorConfig(latency_ms=0, seed=1)) as sim:
        runner = limited_runner(tmp_path, sim.base_url, 10_000, workers, {"tokens_per_minute": 60_000}, clock)
        running = asyncio.create_task(runner.run())
        await until(lambda: clock.sleeping == idle)
        await advance_settled(clock, 3.0, 30, lambda: clock.sleeping == idle)
        seconds = runner.snapshot().history[1:3]  # the whole seconds after the first one's burst
        stopping = asyncio.create_task(runner.shutdown())
        await until(lambda: runner.snapshot().state == "pausing")
        clock.advance(0.1)  # the waiting workers hear of the pause at the watcher's next look
        assert await asyncio.wait_for(stopping, 30) == 130
        await asyncio.wait_for(running, 30)
    assert [second.t for second in seconds] == [1, 2]
    tokens_per_s = sum(second.tokens for second in seconds) / len(seconds)
    print(f"\n[tokens_per_minute] {tokens_per_s:,.0f} tokens/s against a limit of 1,000/s")
    assert 900 <= tokens_per_s <= 1050


async def test_x_ratelimit_headers_hold_dispatch_before_the_limit_is_hit(tmp_path):
    figures, runner = await run_phases(
        tmp_path, [Phase(100, 3)], window_s=1, latency_ms=50, workers={"count": 16}, headers=True
    )
    traffic = runner.snapshot().traffic
    report("x-ratelimit headers", figures, last_s=2)
    assert traffic.remaining_requests is not None and traffic.holds >= 1
    assert figures[0].reach(last_s=2) >= 0.8


@pytest.mark.benchmark
@pytest.mark.timeout(900)
async def test_full_scale_a_requests_per_minute_limit_that_changes(tmp_path):
    # 1,200, then 600, then 1,800 requests a minute, three minutes each; a round trip of 500 ms
    phases = [Phase(1200, 180), Phase(600, 180), Phase(1800, 180)]
    figures, _ = await run_phases(
        tmp_path, phases, window_s=60, latency_ms=500, workers={"count": 4, "adaptive": True, "min": 1, "max": 1000}
    )
    share = report("adaptive, per minute", figures, last_s=120)
    for f in figures:
        per_minute = [sum(f.ok_per_s[i : i + 60]) for i in range(0, len(f.ok_per_s), 60)]
        print(
            f"  limit {f.limit_per_s * 60:g}/min: 80 % over 10 s after {f.reached_after_s(over_s=10)} s; "
            f"good answers in each minute {per_minute}"
        )
    assert share < 0.05
    for f in figures:
        # "reaches 80 % of the limit within a minute": the rate of good answers over 10 s (a
        # steadier measure than 2 s at 10 to 30 a second). Not the count of the first minute: after
        # the cut to 600 the server admits nothing for 30 s (the 1,200 of the last minute still
        # count), and 480 in the rest of that minute would take 16 a second, above the new limit,
        # which a controller that keeps to it does not send
        reached = f.reached_after_s(over_s=10)
        assert reached is not None and reached <= 60
        assert f.reach(last_s=120) >= 0.8  # and it stays there

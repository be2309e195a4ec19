"""Traffic control in whole jobs: budgets and storms pause the job with the reason, through the real
command line; limits change live through the runner."""

from __future__ import annotations

import asyncio

from run_helpers import (
    RUN_SLEEPERS,
    advance_settled,
    limited_runner,
    read_records,
    tokenflow,
    until,
    write_input,
    write_job,
)
from suite_helpers import file_figures

from tokenflow_tui.engine import ManualClock
from tokenflow_tui.sim import Simulator, SimulatorConfig, SimulatorProcess


def test_the_token_budget_pauses_the_job_and_each_rerun_allows_as_much_again(tmp_path):
    write_input(tmp_path / "prompts.jsonl", 1000)
    job = write_job(
        tmp_path,
        {
            "job": {"name": "budget", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"simulate": True, "simulator": {"latency_ms": 5, "seed": 1}},
            "request": {"params": {"max_tokens": 16}},
            "workers": {"count": 4},
            "limits": {"max_total_tokens": 2000},
        },
    )
    first = tokenflow("run", str(job), "--headless")
    assert first.returncode == 1, first.stderr
    (paused,) = [line for line in first.stderr.splitlines() if line.startswith("budget: paused: ")]
    assert paused.startswith("budget: paused: the token budget is spent: 2,0")
    assert paused.endswith(" tokens used of 2,000 allowed (limits.max_total_tokens); resume to allow as many again")
    done_first = len(read_records(tmp_path / "out" / "results.jsonl"))
    # about 12 tokens a request: the budget stops it near 2,000 / 12, the requests in flight finish
    assert 150 <= done_first <= 180
    second = tokenflow("run", str(job), "--headless")
    assert second.returncode == 1 and "of 4,0" in second.stderr  # another 2,000 beyond what was spent
    figures = file_figures(tmp_path / "out" / "results.jsonl")
    assert 2 * 150 <= len(figures.indexes) <= 2 * 180 and figures.duplicated == 0


def test_a_storm_of_404s_pauses_the_job_instead_of_failing_the_whole_input(tmp_path):
    write_input(tmp_path / "prompts.jsonl", 2000)
    with SimulatorProcess(SimulatorConfig(latency_ms=1)) as sim:
        job = write_job(
            tmp_path,
            {
                "job": {"name": "storm", "input": "prompts.jsonl", "output": "out"},
                "endpoint": {"base_url": sim.base_url.replace("/v1", "/v2"), "model": "m"},  # a wrong API root
                "workers": {"count": 4},
            },
        )
        run = tokenflow("run", str(job), "--headless")
    assert run.returncode == 1, run.stderr
    assert (
        "storm: paused: 20 of the last 20 requests failed with errors that retrying cannot fix "
        "(mostly HTTP 404, 20 times); check the job and the failed requests, then resume to go on anyway"
    ) in run.stderr
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert 20 <= len(records) <= 24  # the storm, and the requests in flight when it was seen
    assert {r["error"]["message"] for r in records} == {"HTTP 404: Unknown request URL: POST /v2/chat/completions."}


async def test_limits_and_budgets_change_live(tmp_path):
    workers = 16
    idle = workers + RUN_SLEEPERS  # every worker waits its turn at the limit
    clock = ManualClock()
    async with Simulator(SimulatorConfig(latency_ms=0, seed=1)) as sim:
        runner = limited_runner(tmp_path, sim.base_url, 2500, workers, {"requests_per_minute": 600}, clock)
        running = asyncio.create_task(runner.run())

        def done() -> int:
            return runner.snapshot().stats.done

        def settled() -> bool:
            return clock.sleeping == idle or runner.snapshot().state != "running"

        await until(lambda: done() == 1 and clock.sleeping == idle)  # the bucket holds one request
        await advance_settled(clock, 1.0, 10, settled)
        assert done() == 11  # one a tenth of a second
        assert runner.set_limits(6000, 0) is None
        await advance_settled(clock, 1.0, 100, settled)
        fast = done() - 11
        assert 90 <= fast <= 100  # 100 a second, less the workers that still wait their turn at the old rate
        assert runner.set_limits(-1, 0) == "requests per minute must be a number of 0 or more, not -1"
        spent = runner.snapshot().traffic.tokens_used
        assert runner.set_budget(spent + 100, 0) is None
        await advance_settled(clock, 1.0, 100, settled)
        await until(lambda: runner.snapshot().state == "paused")  # the requests in flight have finished
        snap = runner.snapshot()
        assert snap.state == "paused" and snap.reason is not None
        assert snap.reason.startswith("the token budget is spent: ")
        assert snap.traffic.max_total_tokens == spent + 100
        assert runner.set_budget(0, 0) is None and runner.set_limits(0, 0) is None
        await runner.resume()
        assert await asyncio.wait_for(running, 30) == 0
        runner.close()
    assert len(read_records(tmp_path / "out" / "results.jsonl")) == 2500

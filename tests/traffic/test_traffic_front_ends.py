"""Traffic control in the plain front ends: the headless progress line and `tokenflow validate`."""

from __future__ import annotations

from pathlib import Path

from tokenflow_tui.cli.headless import progress_line
from tokenflow_tui.engine.stats import StatsSnapshot
from tokenflow_tui.job.describe import describe
from tokenflow_tui.job.inputs import InputSummary
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.contract import RunSnapshot, TrafficView

_LINE = "demo: 1,234/5,000 (24.7%) · 34 failed · 100 in flight · 312 req/s · 6,178 tok/s · ETA 0:12"


def _snapshot(traffic: TrafficView) -> RunSnapshot:
    stats = StatsSnapshot(
        "running", 5000, 1200, 34, 100, 3666, 1400, 166, 100, 100, 65.0, 300.0, 312.4, 290.0, 280.0, 0.25, 0.4, 0.5
    )
    return RunSnapshot(
        "demo", "runs/demo", "running", None, stats, 1000, 2000, 6178.2, 5000.0, {}, {}, [], None, traffic
    )


def test_the_progress_line_says_nothing_of_traffic_control_that_does_not_act():
    # a job's limits are not news on every line; an unlimited budget and no pace neither
    assert progress_line(_snapshot(TrafficView(requests_per_minute=600, tokens_used=3000))) == _LINE


def test_the_progress_line_tells_the_hold_the_target_the_pace_and_the_budgets():
    traffic = TrafficView(
        held_s=11.2,
        held_because="the server answers 429 (too many requests)",
        adaptive=True,
        target_workers=37,
        workers_min=1,
        workers_max=400,
        pace_per_minute=540.4,
        tokens_used=1_234_567,
        max_total_tokens=5_000_000,
        cost_usd=0.125,
        max_cost_usd=5.0,
    )
    assert progress_line(_snapshot(traffic)) == (
        f"{_LINE} · held 12 s · target 37 workers · paced 540/min · 1,234,567/5,000,000 tokens · $0.12/$5.00"
    )


def test_the_progress_line_shows_each_part_alone():
    assert progress_line(_snapshot(TrafficView(adaptive=True, target_workers=8))) == f"{_LINE} · target 8 workers"
    assert progress_line(_snapshot(TrafficView(pace_per_minute=1200))) == f"{_LINE} · paced 1,200/min"
    # a cost budget without prices cannot be counted: nothing to show
    assert progress_line(_snapshot(TrafficView(max_cost_usd=5.0))) == _LINE


def _job(tmp_path: Path, limits: str, workers: str = "count = 8") -> list[str]:
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    path = tmp_path / "job.toml"
    path.write_text(
        f'[job]\nname = "t"\ninput = "prompts.jsonl"\n[endpoint]\nsimulate = true\n'
        f"[workers]\n{workers}\n[limits]\n{limits}\n"
    )
    rows = describe(load_job(path, {}), InputSummary(1, (0,)))
    return [row for row in rows if row.startswith(("workers", "limits"))]


def test_validate_tells_the_traffic_control_of_the_job(tmp_path):
    assert _job(tmp_path, "") == ["workers   8 (up to 32 from the dashboard)", "limits    none"]
    assert _job(
        tmp_path,
        "requests_per_minute = 1500.5\ntokens_per_minute = 90000",
        "count = 4\nadaptive = true\nmin = 1\nmax = 1000",
    ) == [
        "workers   4 (adaptive, 1 to 1000)",
        "limits    1,500.5 requests/min, 90,000 tokens/min",
    ]
    prices = "price_input_per_million_usd = 0.15\nprice_output_per_million_usd = 0.6"
    assert _job(tmp_path, f"max_total_tokens = 2000000\n{prices}") == [
        "workers   8 (up to 32 from the dashboard)",
        "limits    2,000,000 tokens in all, no cost budget ($0.15 in, $0.6 out per million tokens)",
    ]
    assert _job(tmp_path, f"max_cost_usd = 12.5\n{prices}")[1] == (
        "limits    $12.50 in all ($0.15 in, $0.6 out per million tokens)"
    )

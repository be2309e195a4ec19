"""Per-second history, tokens and error kinds of a run, and their round trip through state.toml."""

from __future__ import annotations

import dataclasses
import tomllib

import tomli_w

from tokenflow_tui.cli.headless import final_line, progress_line
from tokenflow_tui.engine.stats import StatsSnapshot
from tokenflow_tui.run.contract import ChartPoint, RunSnapshot
from tokenflow_tui.run.statistics import RunStats


def test_history_has_one_point_per_second_with_gaps_filled():
    stats = RunStats()
    stats.note_attempt(0.2, {"prompt_tokens": 3, "completion_tokens": 4}, None)
    stats.note_finished(0.2, None)
    stats.note_attempt(0.7, None, "http_429")
    stats.note_attempt(3.1, {"prompt_tokens": 1, "completion_tokens": 1}, None)
    stats.note_finished(3.1, "timeout")
    assert stats.history(4.5) == [
        ChartPoint(0, 1, 7, {"http_429": 1}),
        ChartPoint(1, 0, 0, {}),
        ChartPoint(2, 0, 0, {}),
        ChartPoint(3, 1, 2, {}),
    ]
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (4, 5, 9)
    assert stats.errors_by_kind == {"http_429": 1}
    assert stats.failed_by_kind == {"timeout": 1}
    stats.unfail("timeout")
    assert stats.failed_by_kind["timeout"] == 0


def test_state_round_trip_restores_the_chart_history():
    stats = RunStats()
    for t in range(5):
        stats.note_attempt(t + 0.5, {"prompt_tokens": t, "completion_tokens": 1}, "http_5xx" if t == 2 else None)
        stats.note_finished(t + 0.5, None)
    history = stats.history(5.0)
    text = tomli_w.dumps({"stats": stats.to_data()})
    restored = RunStats.from_data(tomllib.loads(text)["stats"])
    assert restored.history(5.0) == history
    restored.note_finished(6.2, None)
    assert restored.history(7.0)[-2:] == [ChartPoint(5, 0, 0, {}), ChartPoint(6, 1, 0, {})]
    assert restored.errors_by_kind == {"http_5xx": 1}


def test_streamed_tokens_count_in_the_second_they_arrive_and_usage_makes_up_the_rest():
    stats = RunStats()
    stats.note_streamed(0.4, 3)
    stats.note_streamed(1.5, 2)
    # the attempt ends in second 2: 5 tokens were seen arriving, its usage says 4 + 6
    stats.note_attempt(2.1, {"prompt_tokens": 4, "completion_tokens": 6}, None, ttft_ms=250.0, streamed_tokens=5)
    # a cut-off attempt has no usage: its streamed tokens stay where they arrived
    stats.note_streamed(2.5, 1)
    stats.note_attempt(2.6, None, "cut_off", ttft_ms=100.0, streamed_tokens=1)
    assert [point.tokens for point in stats.history(3.0)] == [3, 2, 5 + 1]
    assert (stats.prompt_tokens, stats.completion_tokens) == (4, 6)
    p50, p95, p99 = stats.ttft_percentiles()
    # the histogram's buckets are about 9 % wide: each percentile lands in the bucket of its sample
    assert 0.09 < p50 < 0.11 and 0.23 < p95 < 0.27 and p95 == p99
    restored = RunStats.from_data(tomllib.loads(tomli_w.dumps({"stats": stats.to_data()}))["stats"])
    assert restored.ttft_percentiles() == (p50, p95, p99)
    assert RunStats().ttft_percentiles() == (None, None, None)


def _snapshot(**stats) -> RunSnapshot:
    base = StatsSnapshot(
        "running", 5000, 1200, 34, 100, 3666, 1400, 166, 100, 100, 65.0, 300.0, 312.4, 290.0, 280.0, 0.25, 0.4, 0.5
    )
    return RunSnapshot(
        "demo",
        "runs/demo",
        "running",
        None,
        dataclasses.replace(base, **stats),
        1000,
        2000,
        6178.2,
        5000.0,
        {},
        {},
        [],
        None,
    )


def test_progress_and_final_lines():
    assert progress_line(_snapshot()) == (
        "demo: 1,234/5,000 (24.7%) · 34 failed · 100 in flight · 312 req/s · 6,178 tok/s · ETA 0:12"
    )
    assert final_line(_snapshot(done=4990, failed=10), 0) == (
        "demo: finished 5,000 requests (4,990 done, 10 failed) in 1:05; results in runs/demo/results.jsonl"
    )
    assert final_line(_snapshot(), 130) == (
        "demo: stopped with 1,234 of 5,000 requests finished; progress saved in runs/demo/results.jsonl; "
        "run the same command again to resume"
    )


def test_the_second_still_open_is_kept_in_the_checkpoint():
    stats = RunStats()
    stats.note_attempt(0.5, None, "timeout")
    stats.note_attempt(1.2, None, "timeout")  # second 1 is still open when saved
    restored = RunStats.from_data(tomllib.loads(tomli_w.dumps({"s": stats.to_data()}))["s"])
    assert sum(p.errors.get("timeout", 0) for p in restored.history(5.0)) == 2

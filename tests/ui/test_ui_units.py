"""The dashboard's pure parts: formatting, charts, the loop-lag monitor."""

from __future__ import annotations

import dataclasses
from datetime import UTC

import pytest
from ui_fakes import NOW, ScriptedRun

from tokenflow_tui.run.contract import ChartPoint
from tokenflow_tui.run.durations import duration
from tokenflow_tui.run.durations import eta_text as eta
from tokenflow_tui.ui.formatting import clock_time, compact, count, fit, latency, one_line, plural, short_status
from tokenflow_tui.ui.lag import LoopLagMonitor
from tokenflow_tui.ui.plot import bar_rows, nice_ceiling, per_second, sparkline
from tokenflow_tui.ui.widgets.numbers import latency_content, tokens_content, workers_text
from tokenflow_tui.ui.widgets.status import RunHeader
from tokenflow_tui.ui.widgets.summary import summary_content
from tokenflow_tui.ui.widgets.trajectory import attempt_content, hanging


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (0, "0"),
        (3.25, "3.2"),
        (812, "812"),
        (52_140, "52.1k"),
        (999_999, "1000k"),
        (1_234_567, "1.2M"),
        (250_000_000, "250M"),
    ],
)
def test_compact(value: float | None, text: str) -> None:
    assert compact(value) == text


@pytest.mark.parametrize(("seconds", "text"), [(None, "—"), (5.9, "0:05"), (754.3, "12:34"), (3723, "1:02:03")])
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [(None, "—"), (0.2125, "212 ms"), (1.27, "1.27 s"), (150, "2.5 min")])
def test_latency(seconds: float | None, text: str) -> None:
    assert latency(seconds) == text


def test_small_formatters() -> None:
    assert count(1_234_567) == "1,234,567"
    assert clock_time(1_700_000_000.0, UTC) == "22:13:20"
    assert plural(1, "request") == "1 request" and plural(1_200, "result") == "1,200 results"
    assert fit("abc", 5) == "abc  " and fit("abc", 5, right=True) == "  abc"
    assert fit("abcdef", 4) == "abc…" and fit("日本語", 4) == "日 …"
    assert one_line("a\n  b\tc ") == "a b c"


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ("200", "200"),
        ("429", "429"),
        ("timeout", "timeout"),
        ("connection", "conn"),
        ("bad_response", "bad"),
        ("handler_exception", "error"),
        ("", ""),
    ],
)
def test_short_status_fits_the_status_columns(status: str, shown: str) -> None:
    assert short_status(status) == shown


def test_an_attempt_error_shows_its_details_but_not_empty_ones() -> None:
    attempt = {
        "params": {"prompt": "hi"},
        "started_at": 1_700_000_000.0,
        "latency_ms": 148.0,
        "error": {
            "kind": "connection",
            "message": "connection reset by peer",
            "status_code": None,
            "excerpt": None,
            "retry_after_s": 2,
        },
    }
    assert attempt_content(1, attempt, UTC).plain == (
        "Attempt 1 · 22:13:20 · 148 ms\n"
        'params\n  {\n    "prompt": "hi"\n  }\n'
        "error · connection\n  connection reset by peer\n  retry_after_s: 2"
    )


def test_an_attempt_names_the_endpoint_it_went_to() -> None:
    attempt = {
        "params": {"prompt": "hi"},
        "result": "hello",
        "status_code": 200,
        "started_at": 1_700_000_000.0,
        "latency_ms": 12.0,
        "endpoint": "backup",
    }
    assert attempt_content(2, attempt, UTC).plain.splitlines()[0] == (
        "Attempt 2 · 22:13:20 · 12 ms · status 200 · endpoint backup"
    )


def test_per_second_aligns_the_last_point_right_and_fills_gaps() -> None:
    history = [ChartPoint(t=t, finished=t * 10, tokens=0) for t in (3, 4, 6)]
    assert per_second(history, 5, lambda p: p.finished) == [0, 30, 40, 0, 60]
    assert per_second(history, 2, lambda p: p.finished) == [0, 60]
    assert per_second([], 3, lambda p: p.finished) == [0, 0, 0]


def test_bar_rows_in_eighths_with_a_floor_for_small_values() -> None:
    assert bar_rows([0, 1, 8, 16], 2, 16) == ["   █", " ▁██"]
    assert bar_rows([0.01], 1, 100) == ["▁"]  # one error must not vanish
    assert sparkline([0, 4, 8], 8) == " ▄█"


@pytest.mark.parametrize(("x", "top"), [(0, 1), (0.3, 0.5), (7, 10), (81, 100), (100, 100), (101, 200), (4_900, 5_000)])
def test_nice_ceiling(x: float, top: float) -> None:
    assert nice_ceiling(x) == pytest.approx(top)


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0
        self.scheduled: list[tuple[float, object]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback):
        self.scheduled.append((when, callback))
        return self

    def cancel(self) -> None:
        self.scheduled.clear()

    def run_next(self, late_by: float) -> None:
        when, callback = self.scheduled.pop(0)
        self.now = when + late_by
        callback()


def test_lag_monitor_notes_lateness_and_keeps_the_last_minute() -> None:
    loop = FakeLoop()
    monitor = LoopLagMonitor(interval_s=0.1, window_s=60, loop=loop)  # type: ignore[arg-type]
    assert monitor.p99_ms() is None
    monitor.start()
    assert loop.scheduled[0][0] == pytest.approx(100.1)
    loop.run_next(0.250)  # one stall of 250 ms ...
    for _ in range(98):
        loop.run_next(0.002)
    assert monitor.p99_ms() == pytest.approx(250)  # ... is the p99 of 99 samples
    loop.run_next(0.002)
    assert monitor.p99_ms() == pytest.approx(2)  # but not of 100
    loop.run_next(0.250)
    assert monitor.p99_ms() == pytest.approx(250)  # two of 101 are
    for _ in range(600):
        loop.run_next(0.002)
    assert monitor.p99_ms() == pytest.approx(2)  # a minute later both are forgotten
    monitor.stop()
    assert loop.scheduled == []


@pytest.mark.parametrize(
    ("state", "workers", "target", "shown"),
    [
        ("running", 64, 64, "64"),
        ("running", 64, 74, "64 → 74"),
        ("pausing", 20, 100, "20 finishing"),  # going down to none, not up to the target
        ("paused", 0, 12, "12 on resume"),
        ("done", 0, 64, "0"),
    ],
)
def test_workers_say_what_the_count_is_doing(state: str, workers: int, target: int, shown: str) -> None:
    run = ScriptedRun(state=state, workers=workers)
    run.target_workers = target
    assert workers_text(run.snapshot()) == shown


def test_the_latency_panel_shows_ttft_only_for_a_streamed_run() -> None:
    snapshot = ScriptedRun().snapshot()
    assert [line.split()[0] for line in latency_content(snapshot).plain.splitlines()] == [
        "p50",
        "p95",
        "p99",
        "attempts",
    ]
    for p50, p95, shown in [(0.12, 0.345, "120/345 ms"), (0.8, 2.54, "0.8/2.5 s"), (90.0, 150.0, "1.5/2.5 min")]:
        streamed = dataclasses.replace(snapshot, ttft_p50_s=p50, ttft_p95_s=p95, ttft_p99_s=p95)
        assert latency_content(streamed).plain.splitlines()[-1] == "ttft 50/95 " + shown.rjust(10)


def test_the_header_says_not_saved_yet_without_a_saved_label() -> None:
    run = ScriptedRun()
    run.saved_at = None
    header = RunHeader()
    header.show_snapshot(run.snapshot(), NOW, UTC)
    assert header.render().plain.splitlines()[0].endswith("ETA 0:14   not saved yet")
    run.saved_at = NOW - 42
    header.show_snapshot(run.snapshot(), NOW, UTC)
    assert header.render().plain.splitlines()[0].endswith("ETA 0:14   saved 22:25:12 (0:42 ago)")


def test_the_summary_says_when_no_attempt_was_timed() -> None:
    run = ScriptedRun()
    run.finish(0)
    snapshot = run.snapshot()
    measured = summary_content(snapshot, 0, None).plain.splitlines()
    assert "latency   p50 212 ms · p95 488 ms · p99 1.27 s" in measured
    unmeasured = dataclasses.replace(
        snapshot, stats=dataclasses.replace(snapshot.stats, latency_p50_s=None, latency_p95_s=None, latency_p99_s=None)
    )
    assert "latency   no timed attempts" in (summary_content(unmeasured, 0, None).plain.splitlines())


@pytest.mark.parametrize(
    ("line", "width", "lines"),
    [
        ("  short", 20, ["  short"]),
        ("  a message that goes on", 14, ["  a message", "    that goes", "    on"]),
        ('    "key": "a long value"', 16, ['    "key": "a', "      long", '      value"']),
        ("  abcdefghijkl", 8, ["  abcd", "    efgh", "    ijkl"]),  # no space: folded
        ("  anything", 0, ["  anything"]),  # no width known yet: left to the widget
    ],
)
def test_hanging_keeps_continuations_under_their_line(line: str, width: int, lines: list[str]) -> None:
    assert hanging(line, width) == lines


def test_the_summary_fits_its_failures_to_the_panel() -> None:
    run = ScriptedRun()
    run.finish(0)
    snapshot = run.snapshot()

    def failures(width: int) -> str:
        return next(
            line for line in summary_content(snapshot, 0, None, width).plain.splitlines() if line.startswith("failures")
        )

    every = "failures  429 rate limit 18 · 5xx server 6 · timeout 6 · connection 5 · bad response 5"
    assert failures(0) == failures(len(every)) == every  # 0: the width is not known yet
    assert failures(76) == "failures  429 rate limit 18 · 5xx server 6 · timeout 6 · 2 more (f)"
    assert failures(40) == "failures  429 rate limit 18 · 4 more (f)"
    assert failures(20) == "failures  429 rate …"


def test_the_eta_in_the_tail_says_what_is_left_in_flight_and_never_0_00() -> None:
    run = ScriptedRun()
    snapshot = run.snapshot()
    stats = dataclasses.replace(snapshot.stats, total=100, done=99, failed=0, in_flight=1, queued=0)
    assert eta("running", stats, 75.0) == "1 in flight, longest 1:15"
    # a fast rate and one request left: less than a second, not 0:00
    assert eta("running", dataclasses.replace(stats, rate_60s=1000.0), None) == "<0:01"
    assert eta("running", dataclasses.replace(stats, done=100, in_flight=0), None) == "0:00"
    assert eta("paused", stats, 75.0) == "—"


def test_the_tokens_panel_shows_cost_so_far_per_minute_and_at_the_end_with_prices() -> None:
    snapshot = ScriptedRun().snapshot()
    assert "cost" not in tokens_content(snapshot).plain
    priced = dataclasses.replace(snapshot, cost_usd=0.0032, cost_per_min_usd=0.00041, cost_projected_usd=1.2346)
    lines = tokens_content(priced).plain.splitlines()
    assert lines[3:] == ["cost              $0.0032  $0.00041/min", "at the end         $1.235"]


def test_dollars_have_four_significant_digits_and_a_spend_is_never_0_00() -> None:
    from tokenflow_tui.run.contract import format_usd

    assert [format_usd(v) for v in (0.0032, 0.001, 1.23456, 12.3456, 5, 0, 1234.5)] == [
        "$0.0032",
        "$0.001",
        "$1.235",
        "$12.35",
        "$5.00",
        "$0.00",
        "$1,234",
    ]


def test_a_long_pause_reason_wraps_instead_of_being_cut() -> None:
    run = ScriptedRun()
    run.reason = "the server refused the key (401: invalid api key); check the key in $OPENAI_API_KEY, then resume"
    header = RunHeader()
    header.show_snapshot(run.snapshot(), NOW, UTC)
    lines = header.render().plain.splitlines()[1:]
    assert " ".join(line.strip() for line in lines) == f"⚠ {run.reason}"
    assert all(len(line) <= 80 for line in lines) and lines[-1].endswith("then resume")


def test_a_run_that_cannot_sort_or_search_says_why_in_the_table() -> None:
    from tokenflow_tui.run.contract import SearchStatus, SortStatus
    from tokenflow_tui.ui.widgets.requests import search_content, sort_note

    why = "not available yet for a run across shards"
    assert sort_note(SortStatus("latency", ready=False, unavailable=why), "all") == f"not sorted by latency: {why}"
    assert sort_note(SortStatus("latency", ready=False, done=1, total=4), "all") == "sorting by latency… 25 %"
    assert search_content(SearchStatus("doc-1", unavailable=why)).plain == f"/doc-1  {why}"

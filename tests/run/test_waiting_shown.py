"""Requests held back by a limit, a hold or the pace are shown as waiting, apart from in flight, in the
headless progress line and the dashboard's counts (issue 11 §6)."""

from __future__ import annotations

import dataclasses

from tokenflow_tui.cli.headless import progress_line
from tokenflow_tui.engine.stats import StatsSnapshot
from tokenflow_tui.run.contract import RunSnapshot, TrafficView
from tokenflow_tui.ui.widgets.numbers import counts_content

STATS = StatsSnapshot(
    "running", 5000, 1200, 34, 10, 3666, 1400, 166, 100, 100, 65.0, 300.0, 312.4, 290.0, 280.0, 0.25, 0.4, 0.5
)


def snapshot(waiting: int) -> RunSnapshot:
    stats = dataclasses.replace(STATS, waiting=waiting, queued=STATS.queued - waiting)
    return RunSnapshot(
        "demo", "runs/demo", "running", None, stats, 1000, 2000, 6178.2, 5000.0, {}, {}, [], None, TrafficView()
    )


def test_the_progress_line_counts_the_waiting_apart_from_the_in_flight():
    assert progress_line(snapshot(90)) == (
        "demo: 1,234/5,000 (24.7%) · 34 failed · 10 in flight · 90 waiting · 312 req/s · 6,178 tok/s · ETA 0:12"
    )
    assert " waiting" not in progress_line(snapshot(0))


def test_the_counts_panel_has_a_waiting_line_only_while_some_wait():
    assert counts_content(snapshot(90)).plain.splitlines() == [
        "done             1,200",
        "failed              34",
        "in flight           10",
        "waiting             90",
        "queued           3,576",
        "retried              0",
    ]
    assert "waiting" not in counts_content(snapshot(0)).plain


def test_the_progress_line_never_says_eta_0_00_while_requests_remain():
    almost = dataclasses.replace(snapshot(0), stats=dataclasses.replace(STATS, rate_60s=1e9))  # ETA under 1 s
    assert progress_line(almost).endswith(" · ETA <0:01")
    tail = dataclasses.replace(snapshot(0), longest_in_flight_s=8.2)
    assert progress_line(tail).endswith(" · ETA 10 in flight, longest 0:08")
    paused = dataclasses.replace(snapshot(0), state="paused")
    assert progress_line(paused).endswith(" · ETA —")

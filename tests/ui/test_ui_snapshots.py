"""Screens of the dashboard at 120×40, fixed theme, clock, lag and data (pytest-textual-snapshot)."""

from __future__ import annotations

import dataclasses

from textual.widgets._footer import FooterKey
from ui_fakes import ACTIVE_TRAFFIC, ENDPOINTS, NOW, RULE_LINES, SIZE, ScriptedRun, make_app, settle

from tokenflow_tui.run.contract import RunEvent

REASON = "paused by itself: the API answered 401 Unauthorized; check OPENAI_API_KEY"


def test_main_running(snap_compare) -> None:
    assert snap_compare(make_app(ScriptedRun()), terminal_size=SIZE)


def test_main_running_a_streamed_job(snap_compare) -> None:
    run = ScriptedRun()
    run.ttft_s = (0.118, 0.342, 0.9)
    assert snap_compare(make_app(run), terminal_size=SIZE)


def test_main_paused_with_a_reason(snap_compare) -> None:
    run = ScriptedRun(state="paused", in_flight=0, reason=REASON)
    assert snap_compare(make_app(run), terminal_size=SIZE)


def test_main_finished(snap_compare) -> None:
    run = ScriptedRun()

    async def finish(pilot) -> None:
        run.finish(0)
        await settle(pilot, "run")
        # the footer drops the steering keys by composing itself again, a few messages later
        for _ in range(50):  # bounded: a handful of pauses is enough
            keys = {footer_key.key for footer_key in pilot.app.screen.query(FooterKey)}
            if keys and "p" not in keys:
                break
            await pilot.pause()

    assert snap_compare(make_app(run), terminal_size=SIZE, run_before=finish)


def test_quit_confirmation(snap_compare) -> None:
    assert snap_compare(make_app(ScriptedRun()), terminal_size=SIZE, press=["q"])


def test_trajectory(snap_compare) -> None:
    assert snap_compare(make_app(ScriptedRun()), terminal_size=SIZE, press=["down"] * 7 + ["enter"])


def test_failed_browser(snap_compare) -> None:
    assert snap_compare(make_app(ScriptedRun()), terminal_size=SIZE, press=["f", "tab", "down"])


def test_main_with_traffic_control(snap_compare) -> None:
    run = ScriptedRun(workers=48)
    run.traffic = ACTIVE_TRAFFIC
    assert snap_compare(make_app(run), terminal_size=SIZE)


def test_failed_browser_on_a_small_terminal(snap_compare) -> None:
    # the trajectory under the two lists, wrapped under its keys; help and quit lead the footer
    assert snap_compare(make_app(ScriptedRun()), terminal_size=(80, 24), press=["f", "tab", "down"])


def test_main_paused_on_a_small_terminal(snap_compare) -> None:
    run = ScriptedRun(state="paused", in_flight=0)
    assert snap_compare(make_app(run), terminal_size=(80, 24))


def test_main_wide_with_four_charts_and_cost(snap_compare) -> None:
    run = ScriptedRun()
    run.traffic = dataclasses.replace(ACTIVE_TRAFFIC, cost_usd=0.0032)
    run.cost = (0.0032, 0.00041, 0.0054)
    assert snap_compare(make_app(run), terminal_size=(200, 40))


def test_events_pane(snap_compare) -> None:
    run = ScriptedRun()
    run.events = (
        RunEvent(NOW - 3600, "open", "started: 2,000 requests", earlier=True),
        RunEvent(NOW - 3000, "pause", f"paused: {REASON}, then resume", earlier=True),
        RunEvent(NOW - 60, "open", "resumed: 1,200 of 2,000 requests finished earlier"),
        RunEvent(NOW - 30, "workers", "workers: 64 → 74"),
        RunEvent(NOW - 12, "hold", "dispatch held for every worker: the server answers 429 (too many requests)"),
        RunEvent(NOW, "save", "saved 1,200 results"),
    )
    assert snap_compare(make_app(run), terminal_size=SIZE, press=["e"])


def test_main_with_checks_and_rules(snap_compare) -> None:
    run = ScriptedRun()
    run.rules = RULE_LINES
    assert snap_compare(make_app(run), terminal_size=SIZE)


def test_search_prompt_over_the_matches_of_the_last_search(snap_compare) -> None:
    # a search done (its line under the table, the cursor on its first match), then / to search again
    keys = ["slash", *"doc-00042", "enter", "n", "slash"]
    assert snap_compare(make_app(ScriptedRun()), terminal_size=SIZE, press=keys)


def test_table_sorted_by_latency(snap_compare) -> None:
    assert snap_compare(make_app(ScriptedRun()), terminal_size=SIZE, press=["o"])


def test_main_with_several_endpoints(snap_compare) -> None:
    # one line per endpoint under the job's traffic topics: state, rate, counts, limit or pace, weight, why
    run = ScriptedRun()
    run.endpoints = ENDPOINTS
    assert snap_compare(make_app(run), terminal_size=SIZE)

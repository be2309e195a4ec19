"""The rules panel and the rule's block in a trajectory (issue 14)."""

from __future__ import annotations

from datetime import UTC

from ui_fakes import RULE_LINES, SIZE, ScriptedRun, make_app

from tokenflow_tui.run.contract import RuleLine
from tokenflow_tui.ui.widgets.rules import RulesPanel, rules_content
from tokenflow_tui.ui.widgets.trajectory import attempt_content


def test_the_panel_lines_name_each_check_and_rule_with_what_it_did() -> None:
    lines = (
        RuleLine("check json", "json", 3, 2, 1_234, None),
        RuleLine("rule 1", "check_failed = json", 2, 2, 990, None),
    )
    assert rules_content(lines, 60).plain.splitlines() == [
        "                                    caught  rescued   tokens",
        "check json                               3        2    1,234",
        "rule 1  check_failed = json              2        2      990",
    ]


async def test_the_panel_shows_only_for_a_job_with_checks_or_rules() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.main_screen.query_one(RulesPanel)
        assert not panel.display
        run.rules = RULE_LINES
        app.main_screen.refresh_data()
        # shown, the panel is laid out, then drawn again at its width: a loaded machine takes a few turns
        for _ in range(50):
            await pilot.pause()
            if "rule 2  check_failed = json_schema" in panel.render().plain:
                break
        assert panel.display and panel.outer_size.height == len(RULE_LINES) + 3  # heading and border
        assert "rule 2  check_failed = json_schema" in panel.render().plain


def test_the_trajectory_says_which_rule_changed_the_next_attempt() -> None:
    attempt = {
        "params": {"prompt": "hi"},
        "error": {
            "kind": "check_failed",
            "message": 'finish_reason: the answer ended with finish reason "length"',
            "status_code": 200,
            "check": "finish_reason",
            "rule": {"index": 0, "when": "finish_reason = length", "change": "max_tokens 256 → 512"},
        },
        "status_code": 200,
        "started_at": 1_700_000_000.0,
        "latency_ms": 12.0,
    }
    text = attempt_content(1, attempt, UTC).plain
    assert text.endswith(
        "error · check failed\n"
        '  finish_reason: the answer ended with finish reason "length"\n'
        "  check: finish_reason\n"
        "next attempt changed by rule 1 (finish_reason = length)\n"
        "  max_tokens 256 → 512"
    )


def test_many_rules_are_cut_to_eight_lines_with_a_pointer_to_the_report() -> None:
    lines = tuple(RuleLine(f"rule {n}", f"status = {500 + n}", n, 0, 0, None) for n in range(1, 11))
    shown = rules_content(lines, 60).plain.splitlines()
    assert len(shown) == 9
    assert shown[-2].startswith("rule 7  status = 507")
    assert shown[-1] == "… and 3 more: tokenflow report lists them all"

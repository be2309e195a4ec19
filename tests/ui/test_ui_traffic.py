"""Traffic control on the dashboard: the panel, the keys l (rate limits) and b (budgets), and p after a
budget paused the job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from run_helpers import read_records, write_input, write_job
from textual.widgets import Input
from ui_fakes import ACTIVE_TRAFFIC, SIZE, Notes, ScriptedRun, make_app, settle

from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.contract import TrafficView
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.ui import TokenFlowApp
from tokenflow_tui.ui.screens.amounts import Amount, AmountsDialog, read_amount
from tokenflow_tui.ui.screens.main import MainScreen
from tokenflow_tui.ui.widgets.status import RunHeader
from tokenflow_tui.ui.widgets.traffic import TrafficPanel, flow, traffic_topics


def plain(topics) -> list[str]:
    return [topic.plain for topic in topics]


def test_no_traffic_control_says_nothing() -> None:
    assert traffic_topics(TrafficView()) == []


def test_every_topic_when_everything_is_active() -> None:
    assert plain(traffic_topics(ACTIVE_TRAFFIC)) == [
        "limits 3,000 requests/min · 450,000 tokens/min",
        "held 2.4 s: the server answers 429 (too many requests) · 3 holds so far",
        "paced 2.5k requests/min (what the server accepted)",
        "press t to reset",
        "adaptive target 48 workers (8–256) · 5 cuts",
        "budget 198k / 500k tokens · $0.42 / $2.00",
        "server allows 120 requests · 81.0k tokens more",
    ]


@pytest.mark.parametrize(
    ("view", "topics"),
    [
        (TrafficView(requests_per_minute=600), ["limits 600 requests/min · none tokens/min"]),
        (TrafficView(tokens_per_minute=90_000), ["limits none requests/min · 90,000 tokens/min"]),
        # once there was a hold, its line stays (with the count), so the panel does not jump
        (TrafficView(holds=2), ["holds 2 · not held now"]),
        # the key that resets traffic control, while something holds or paces
        (
            TrafficView(holds=1, held_s=1.5, held_because="429s"),
            ["held 1.5 s: 429s · 1 hold so far", "press t to reset"],
        ),
        (TrafficView(pace_per_minute=90), ["paced 90 requests/min (what the server accepted)", "press t to reset"]),
        (
            TrafficView(adaptive=True, target_workers=1, workers_min=1, workers_max=4, cuts=1),
            ["adaptive target 1 workers (1–4) · 1 cut"],
        ),
        (TrafficView(tokens_used=2_100, max_total_tokens=2_000), ["budget 2.1k / 2.0k tokens"]),
        (TrafficView(cost_usd=0.5, max_cost_usd=0.25), ["budget $0.50 / $0.25"]),
        # a cost without a cost budget is no budget
        (TrafficView(cost_usd=0.5), []),
        (TrafficView(remaining_tokens=0), ["server allows 0 tokens more"]),
    ],
)
def test_only_what_carries_information(view: TrafficView, topics: list[str]) -> None:
    assert plain(traffic_topics(view)) == topics


def test_topics_share_a_line_when_they_fit_and_are_cut_when_one_does_not() -> None:
    topics = traffic_topics(ACTIVE_TRAFFIC)
    assert plain(flow(topics, 116)) == [
        "limits 3,000 requests/min · 450,000 tokens/min",
        "held 2.4 s: the server answers 429 (too many requests) · 3 holds so far",
        "paced 2.5k requests/min (what the server accepted)   press t to reset   adaptive target 48 workers (8–256) · 5 cuts",
        "budget 198k / 500k tokens · $0.42 / $2.00   server allows 120 requests · 81.0k tokens more",
    ]
    narrow = plain(flow(topics, 40))
    assert len(narrow) == 7 and narrow[1] == "held 2.4 s: the server answers 429 (too…"
    assert all(len(line) <= 40 for line in narrow)


@pytest.mark.parametrize(
    ("amount", "text", "read"),
    [
        (Amount("requests/min", 0), "1,200", 1_200.0),
        (Amount("requests/min", 0), " 0.5 ", 0.5),
        (Amount("requests/min", 10), "", 0),
        (Amount("requests/min", 10), "None", 0),
        (Amount("tokens/min", 0, whole=True), "90_000", 90_000),
        (Amount("tokens/min", 0, whole=True), "1.5", "tokens/min: “1.5” is not a whole number (0 means none)"),
        (Amount("requests/min", 0), "fast", "requests/min: “fast” is not a number (0 means none)"),
        (Amount("requests/min", 0), "-3", "requests/min must be a number of 0 or more (0 means none)"),
        (Amount("requests/min", 0), "inf", "requests/min must be a number of 0 or more (0 means none)"),
        (Amount("requests/min", 0), "nan", "requests/min must be a number of 0 or more (0 means none)"),
    ],
)
def test_what_the_dialog_reads(amount: Amount, text: str, read: float | str) -> None:
    assert read_amount(amount, text) == read


async def test_the_panel_hides_without_traffic_control_and_shows_when_there_is() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.main_screen.query_one(TrafficPanel)
        assert not panel.display
        run.traffic = ACTIVE_TRAFFIC
        app.main_screen.refresh_data()
        await pilot.pause()
        assert panel.display and panel.outer_size.height == 6  # four lines at 120 columns, and the border
        assert "held 2.4 s: the server answers 429" in panel.render().plain
        run.traffic = TrafficView()
        app.main_screen.refresh_data()
        await pilot.pause()
        assert not panel.display


async def test_a_narrow_terminal_folds_the_panel_into_fewer_words() -> None:
    run = ScriptedRun()
    run.traffic = ACTIVE_TRAFFIC
    app = make_app(run)
    async with app.run_test(size=(80, 24)):
        assert app.main_screen.query_one(TrafficPanel).render().plain.splitlines() == [
            "limits 3,000/min · 450,000 tokens/min   held 2.4 s (3 holds)",
            "paced 2.5k/min   t resets   adaptive 48 (8–256) · 5 cuts",
            "budget 198k / 500k tokens · $0.42 / $2.00",
            "server allows 120 requests · 81.0k tokens",
        ]


async def dialog_values(app) -> list[str]:
    return [field.value for field in app.screen.query(Input)]


async def test_l_changes_the_rate_limits() -> None:
    run = ScriptedRun()
    run.traffic = TrafficView(requests_per_minute=3_000)
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("l")
        assert isinstance(app.screen, AmountsDialog)
        assert await dialog_values(app) == ["3000", "0"]  # prefilled, 0 for none
        await pilot.press(*"1200", "tab", *"90000", "enter")  # the text is selected: typing replaces it
        await pilot.pause()
        assert app.screen is app.main_screen
        app.main_screen.refresh_data()
        assert "limits 1,200 requests/min · 90,000 tokens/min" in app.main_screen.query_one(TrafficPanel).render().plain
    assert [call for call in run.calls if call[0] == "set_limits"] == [("set_limits", 1_200.0, 90_000)]
    assert notes == ["limits: requests/min 3,000 → 1,200 · tokens/min none → 90,000"]


async def test_l_with_a_bad_number_says_why_in_the_dialog_and_escape_cancels() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("l", "tab", *"lots", "enter")
        await pilot.pause()
        assert isinstance(app.screen, AmountsDialog)
        error = app.screen.query_one("#amount-error")
        assert error.display and error.render().plain == "tokens/min: “lots” is not a whole number (0 means none)"
        assert app.screen.focused.id == "amount-1"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main_screen
    assert not [call for call in run.calls if call[0] == "set_limits"]
    assert notes == []


async def test_b_changes_the_budgets_and_shows_the_runners_refusal_in_the_dialog() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("b", *"500000", "enter")
        await pilot.pause()
        await pilot.press("b", *"800000", "tab", *"2.5", "enter")  # no prices in this job: the run refuses
        await pilot.pause()
        # the dialog stays, with what was typed and why it was refused
        assert isinstance(app.screen, AmountsDialog)
        assert await dialog_values(app) == ["800000", "2.5"]
        error = app.screen.query_one("#amount-error")
        assert error.display and error.render().plain == "a cost budget needs the prices in the job file"
        await pilot.press("backspace", "backspace", "backspace")  # editing hides the error, now stale
        await pilot.pause()
        assert not error.display
        await pilot.press("0", "enter")
        await pilot.pause()
        assert app.screen is app.main_screen
    assert [call for call in run.calls if call[0] == "set_budget"] == [
        ("set_budget", 500_000, 0),
        ("set_budget", 800_000, 2.5),
        ("set_budget", 800_000, 0),
    ]
    assert notes == [
        "budget: max total tokens none → 500,000 · max cost (USD) none (unchanged)",
        "budget: max total tokens 500,000 → 800,000 · max cost (USD) none (unchanged)",
    ]
    assert run.traffic.max_total_tokens == 800_000 and run.traffic.max_cost_usd == 0


async def test_the_budget_dialog_says_what_is_spent_so_far() -> None:
    run = ScriptedRun()
    run.traffic = TrafficView(tokens_used=1_234, cost_usd=0.5, max_cost_usd=2.0)
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        assert await dialog_values(app) == ["0", "2"]
        assert "1,234 tokens · $0.50 so far" in app.screen.query_one(".amount-note").render().plain


@pytest.mark.parametrize("key", ["l", "b"])
async def test_traffic_keys_while_starting_say_why(key: str) -> None:
    run = ScriptedRun(state="starting")
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press(key)
        await pilot.pause()
        assert app.screen is app.main_screen
    assert notes == ["the job is starting: try again in a moment"]


SPENT = TrafficView(tokens_used=2_040, max_total_tokens=2_000)
REASON = (
    "the token budget is spent: 2,040 tokens used of 2,000 allowed (limits.max_total_tokens); "
    "resume to allow as many again"
)


def paused_by_its_budget() -> ScriptedRun:
    run = ScriptedRun(state="paused", in_flight=0, reason=REASON)
    run.traffic = SPENT
    return run


async def test_p_on_a_spent_budget_resumes_and_says_it_will_pause_again() -> None:
    run = paused_by_its_budget()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("p")
        await settle(pilot, "resume")
    assert run.state == "running"
    assert notes == [
        "resuming: the token budget (2,040 of 2,000 tokens) is spent, so the job gets as much "
        "again and pauses when that is spent too; b raises or clears the budget"
    ]


async def test_b_then_p_after_a_budget_paused_the_job() -> None:
    run = paused_by_its_budget()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("b", *"10000", "enter")
        await pilot.pause()
        await pilot.press("p")
        await settle(pilot, "resume")
    assert run.state == "running"
    assert notes == [
        "budget: max total tokens 2,000 → 10,000 · max cost (USD) none (unchanged); p resumes the job",
        "resuming",
    ]


async def test_traffic_keys_are_in_the_help_and_blocked_under_a_dialog() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        text = "\n".join(static.render().plain for static in app.screen.query("Static"))
        assert "change the rate limits" in text and "change the budgets" in text
        assert "forget the pace, the holds and the limits read from the server's 429s" in text
        await pilot.press("escape", "l")
        await pilot.pause()
        await pilot.press("b")  # typed into the dialog, not a second dialog
        await pilot.pause()
        assert isinstance(app.screen, AmountsDialog) and len(app.screen_stack) == 2
        assert isinstance(app.screen_stack[0], MainScreen)


async def test_t_resets_traffic_control_and_the_panel_stops_offering_it() -> None:
    run = ScriptedRun()
    run.traffic = ACTIVE_TRAFFIC
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        panel = app.main_screen.query_one(TrafficPanel)
        assert "press t to reset" in panel.render().plain
        await pilot.press("t")
        await pilot.pause()
        app.main_screen.refresh_data()
        shown = panel.render().plain
        assert "paced" not in shown and "held 2.4 s" not in shown and "press t to reset" not in shown
    assert [call for call in run.calls if call[0] == "reset_traffic"] == [("reset_traffic",)]
    assert notes == ["traffic control reset: the pace, the holds and the limits read from the server are forgotten"]


# ----- the real runner ---------------------------------------------------------------------------

REQUESTS = 400
BUDGET = 600  # tokens: about 50 requests of the simulator's
DEADLINE_S = 30.0  # each wait below takes well under a second; only a hang comes near this


async def wait_for(pilot, what, condition) -> None:
    """Let the app run until `condition()` holds; bounded."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {DEADLINE_S:.0f} s"
        await pilot.pause(0.02)


def paused_by_the_budget(runner: JobRunner) -> bool:
    snapshot = runner.snapshot()
    return snapshot.state == "paused" and (snapshot.reason or "").startswith("the token budget is spent")


async def test_budget_and_limits_through_the_dashboard_on_the_real_runner(tmp_path: Path) -> None:
    write_input(tmp_path / "prompts.jsonl", REQUESTS)
    job = write_job(
        tmp_path,
        {
            "job": {"name": "budget", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"simulate": True, "timeout_s": 2, "simulator": {"latency_ms": 5, "seed": 1}},
            "request": {"params": {"max_tokens": 16}},
            "workers": {"count": 8},
            "limits": {"max_total_tokens": BUDGET},
        },
    )
    runner = JobRunner(load_job(job), save_interval_s=3600)
    runner.open()
    notes = Notes()
    app = TokenFlowApp(runner)
    try:
        async with app.run_test(size=SIZE, message_hook=notes) as pilot:
            await wait_for(pilot, "the budget pause", lambda: paused_by_the_budget(runner))
            app.main_screen.refresh_data()
            header = app.main_screen.query_one(RunHeader).render().plain
            assert "⚠ the token budget is spent: " in header
            first = runner.snapshot().traffic.tokens_used
            # p without raising the budget: the run allows as much again, and says it will pause again
            await pilot.press("p")
            await wait_for(
                pilot,
                "the second budget pause",
                lambda: paused_by_the_budget(runner) and runner.snapshot().traffic.tokens_used > first,
            )
            assert notes[0].startswith(
                f"resuming: the token budget ({first:,} of {BUDGET:,} tokens) is spent, "
                "so the job gets as much again and pauses when that is spent too"
            )
            allowance = runner.snapshot().traffic.max_total_tokens
            assert first + BUDGET == allowance
            # b clears the budget that paused the job: it goes on by itself, to its end
            await pilot.press("b", "0", "enter")
            await pilot.pause()
            assert runner.snapshot().traffic.max_total_tokens == 0
            await wait_for(pilot, "the end of the run", lambda: app.run_code is not None)
            assert notes[1:] == [
                f"budget: max total tokens {allowance:,} → none · max cost (USD) none (unchanged); the job goes on"
            ]
            assert app.run_code == 0
            await pilot.press("q")
            await pilot.pause()
    finally:
        runner.close()
    assert app.return_value == 0
    assert len(read_records(tmp_path / "out" / "results.jsonl")) == REQUESTS


async def test_a_run_that_raises_on_new_limits_is_reported_as_a_sentence() -> None:
    class Broken(ScriptedRun):
        def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
            raise RuntimeError("the buckets are gone")

    notes = Notes()
    app = make_app(Broken())
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("l", "enter")
        await pilot.pause()
        assert isinstance(app.screen, AmountsDialog)
        assert app.screen.query_one("#amount-error").render().plain == (
            "setting the rate limits failed: RuntimeError: the buckets are gone"
        )
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main_screen
    assert notes == []


def test_one_line_per_endpoint_says_its_state_rate_counts_limit_and_why() -> None:
    from ui_fakes import ENDPOINTS

    from tokenflow_tui.ui.widgets.traffic import endpoint_line

    assert [endpoint_line(view, 7).plain for view in ENDPOINTS] == [
        "endpoint primary sending 41.5/s · 8,412 attempts, 12 failed, 8,380 done · limit 3,000/min · 450k tokens/min"
        " · weight 3",
        "endpoint limited held    6.2/s · 2,210 attempts, 388 failed, 1,790 done · paced 360/min · weight 1"
        " · the server answers 429 (too many requests)",
        "endpoint dead    paused  0.0/s · 0 attempts, 0 failed, 0 done · weight 1 · the server at "
        "http://10.0.0.7:8000/v1 cannot be reached (20 attempts in a row over 5 s failed to connect: the connection "
        "failed: Connect call failed); check that it runs and the address, then resume",
    ]

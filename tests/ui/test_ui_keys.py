"""Every key of the dashboard and its effect on the run, on the screens and on the exit code."""

from __future__ import annotations

import pytest
from textual import events
from ui_fakes import NOW, SIZE, FixedLag, Notes, ScriptedRun, make_app, settle

from tokenflow_tui.run.contract import RunEvent
from tokenflow_tui.ui.screens.dialogs import ConfirmQuitScreen, HelpScreen
from tokenflow_tui.ui.screens.events import EventsScreen
from tokenflow_tui.ui.screens.failed import FailedScreen
from tokenflow_tui.ui.screens.main import MainScreen
from tokenflow_tui.ui.screens.trajectory import TrajectoryScreen
from tokenflow_tui.ui.widgets.requests import FilterBar, RequestTable
from tokenflow_tui.ui.widgets.status import RunHeader

CONTROL_CALLS = {"pause", "resume", "stop_now", "set_workers", "save", "shutdown", "retry"}


def control_calls(run: ScriptedRun) -> list[tuple]:
    return [call for call in run.calls if call[0] in CONTROL_CALLS]


async def press(key: str, run: ScriptedRun, *, worker: str | None = None) -> tuple[list[tuple], Notes]:
    """Press `key` on a fresh dashboard; the control calls it made and the notifications it showed."""
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press(key)
        await settle(pilot, *([worker] if worker else []))
    return control_calls(run), notes


async def test_p_pauses_a_running_job_softly() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("p")
        await settle(pilot, "pause")
        assert control_calls(run) == [("pause",)]
        assert notes == ["pausing: 64 requests in flight will finish, nothing new starts"]
        app.main_screen.refresh_data()
        assert "PAUSED" in app.main_screen.query_one(RunHeader).render().plain


async def test_p_resumes_a_paused_job() -> None:
    run = ScriptedRun(state="paused")
    calls, notes = await press("p", run, worker="resume")
    assert calls == [("resume",)]
    assert notes == ["resuming"]
    assert run.state == "running"


async def test_p_while_our_pause_waits_resumes_once_it_has_paused() -> None:
    run = ScriptedRun()
    run.pause_gate.clear()  # requests in flight still finishing
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("p")
        await pilot.pause()
        assert run.state == "pausing"
        await pilot.press("p")
        await pilot.pause()
        assert control_calls(run) == [("pause",)]  # the run would ignore a resume now
        run.pause_gate.set()
        await settle(pilot, "pause", "resume")
        assert control_calls(run) == [("pause",), ("resume",)]
        assert run.state == "running"
    assert notes == [
        "pausing: 64 requests in flight will finish, nothing new starts",
        "resuming once the requests in flight have finished",
    ]


async def test_p_a_third_time_takes_the_resume_back() -> None:
    run = ScriptedRun()
    run.pause_gate.clear()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        for _ in range(3):
            await pilot.press("p")
            await pilot.pause()
        run.pause_gate.set()
        await settle(pilot, "pause", "resume")
        assert control_calls(run) == [("pause",)]
        assert run.state == "paused"
        await pilot.press("p")  # and a fourth time resumes, now that the job has paused
        await settle(pilot, "resume")
        assert run.state == "running"
    assert notes[1:] == ["resuming once the requests in flight have finished", "staying paused", "resuming"]


async def test_p_while_the_run_pauses_by_itself_says_to_wait() -> None:
    calls, notes = await press("p", ScriptedRun(state="pausing"))
    assert calls == []
    assert notes == ["the job is pausing: p resumes it once it has paused"]


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("done", "the job is done"),
        ("starting", "the job is starting: try again in a moment"),
        ("stopping", "the job is stopping: p resumes it once it has stopped"),
    ],
)
async def test_p_says_why_it_does_nothing(state: str, why: str) -> None:
    calls, notes = await press("p", ScriptedRun(state=state))
    assert calls == []
    assert notes == [why]


@pytest.mark.parametrize(
    ("in_flight", "note"),
    [
        (12, "stopping now: 12 requests in flight go back to the queue"),
        (1, "stopping now: 1 request in flight goes back to the queue"),
    ],
)
async def test_x_stops_now(in_flight: int, note: str) -> None:
    calls, notes = await press("x", ScriptedRun(in_flight=in_flight), worker="stop_now")
    assert calls == [("stop_now",)]
    assert notes == [note]


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("paused", "the job is paused: nothing is in flight"),
        ("stopping", "the job is stopping already"),
        ("done", "the job is done"),
        ("starting", "the job is starting: try again in a moment"),
    ],
)
async def test_x_says_why_it_does_nothing(state: str, why: str) -> None:
    calls, notes = await press("x", ScriptedRun(state=state))
    assert calls == []
    assert notes == [why]


@pytest.mark.parametrize(
    ("key", "workers", "wanted", "note"),
    [
        ("plus", 64, 65, "workers: 64 → 65"),
        ("minus", 64, 63, "workers: 64 → 63"),
        ("right_square_bracket", 64, 74, "workers: 64 → 74"),
        ("left_square_bracket", 64, 54, "workers: 64 → 54"),
        ("left_square_bracket", 5, 1, "workers: 5 → 1"),
        ("minus", 1, 0, "at 1 worker already"),
        ("left_square_bracket", 1, -9, "at 1 worker already"),
        ("right_square_bracket", 995, 1_005, "at most 1,000 workers"),
    ],
)
async def test_worker_keys_ask_for_a_new_target(key: str, workers: int, wanted: int, note: str) -> None:
    run = ScriptedRun(workers=workers)
    calls, notes = await press(key, run)
    assert calls == [("set_workers", wanted)]
    assert notes == [note]
    assert run.target_workers == (wanted if 1 <= wanted <= 1_000 else workers)


async def test_the_new_worker_target_shows_on_the_next_refresh() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("right_square_bracket")
        app.main_screen.refresh_data()
        await pilot.pause()
        assert "64 → 74" in app.main_screen.query_one("#speed").render().plain


def footer_keys(app) -> set[str]:
    """The keys the screen's footer would show."""
    return {key for key, active in app.screen.active_bindings.items() if active.binding.show}


async def test_steering_keys_leave_the_footer_once_the_run_has_returned_and_say_why() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    steering = ["p", "x", "plus", "minus", "right_square_bracket", "left_square_bracket", "l", "b"]
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        assert set(steering) <= footer_keys(app)
        run.finish(0)
        await settle(pilot, "run")
        assert not set(steering) & footer_keys(app)
        assert {"s", "q", "f", "enter"} <= footer_keys(app)
        for key in steering:
            await pilot.press(key)
            await pilot.pause()
        assert app.screen is app.main_screen  # l and b open no dialog
        await pilot.press("enter")  # on the trajectory screen too
        await pilot.press("p")
        await pilot.pause()
    assert control_calls(run) == []
    assert notes == ["the job is done: nothing is left to pause, stop or change (q quits)"] * (len(steering) + 1)


async def test_p_while_quitting_says_the_app_quits_rather_than_waiting_to_resume() -> None:
    run = ScriptedRun(in_flight=12)
    run.shutdown_gate.clear()  # the quit's pause waits for the requests in flight
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("q", "y")
        await pilot.pause()
        await pilot.press("p")
        await pilot.pause()
        assert notes[-1] == "quitting once the requests in flight have finished; x stops them now"
        assert control_calls(run) == [("shutdown",)]
        run.shutdown_gate.set()
        await settle(pilot, "shutdown")
    assert app.return_value == 130


@pytest.mark.parametrize("key", ["plus", "minus", "right_square_bracket", "left_square_bracket"])
async def test_worker_keys_when_done(key: str) -> None:
    calls, notes = await press(key, ScriptedRun(state="done"))
    assert calls == []
    assert notes == ["the job is done"]


async def test_s_saves_and_says_what_was_saved() -> None:
    calls, notes = await press("s", ScriptedRun(), worker="save")
    assert calls == [("save",)]
    assert notes == ["saved 1,200 results to runs/demo/results.jsonl at 22:25:54"]


async def test_s_while_saving_says_so() -> None:
    run = ScriptedRun()
    run.save_gate.clear()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        assert notes == ["saving already"]
        run.save_gate.set()
        await settle(pilot, "save")
    assert control_calls(run) == [("save",)]
    assert notes[-1].startswith("saved 1,200 results")


async def test_q_with_nothing_in_flight_saves_and_quits_with_the_shutdown_code() -> None:
    run = ScriptedRun(state="paused", in_flight=0)
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await settle(pilot, "shutdown")
    assert control_calls(run) == [("shutdown",)]
    assert app.return_value == 130


async def test_q_in_flight_asks_first_and_n_cancels() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmQuitScreen)
        await pilot.press("n")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("q", "escape")
        assert isinstance(app.screen, MainScreen)
        assert control_calls(run) == []
    assert app.return_value is None


@pytest.mark.parametrize("confirm", ["y", "enter"])
async def test_q_in_flight_then_confirm_quits(confirm: str) -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q", confirm)
        await settle(pilot, "shutdown")
    assert control_calls(run) == [("shutdown",)]
    assert app.return_value == 130


async def test_quitting_says_how_not_to_wait_and_x_stops_the_requests_in_flight() -> None:
    run = ScriptedRun(in_flight=12)
    run.shutdown_gate.clear()  # the soft pause of the shutdown waits for the requests in flight
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("q", "y")
        await pilot.pause()
        assert run.state == "pausing"
        await pilot.press("x")
        await settle(pilot, "stop_now")
        assert control_calls(run) == [("shutdown",), ("stop_now",)]
        run.shutdown_gate.set()
        await settle(pilot, "shutdown")
    assert app.return_value == 130
    assert notes == [
        "saving and quitting once 12 requests in flight have finished; x stops them now",
        "stopping now: 12 requests in flight go back to the queue",
    ]


async def test_ctrl_q_takes_the_same_way_out() -> None:
    run = ScriptedRun(in_flight=0)
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await settle(pilot, "shutdown")
    assert control_calls(run) == [("shutdown",)]
    assert app.return_value == 130


@pytest.mark.parametrize("code", [0, 2])
async def test_q_after_the_run_returned_exits_with_its_code(code: int) -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        run.finish(code)
        await settle(pilot, "run")
        await pilot.press("q")
        await pilot.pause()
    assert control_calls(run) == []
    assert app.return_value == code


async def test_question_mark_shows_the_keys_and_blocks_run_keys() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(static.render().plain for static in app.screen.query("Static"))
        for described in ("pause softly", "ten workers less", "save and quit", "queue the selected request again"):
            assert described in text
        await pilot.press("p", "x", "plus", "s")
        await pilot.pause()
        assert control_calls(run) == []
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_enter_opens_the_selected_request_and_escape_comes_back() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "down", "enter")
        assert isinstance(app.screen, TrajectoryScreen)
        assert app.screen.row.index == 2
        await pilot.press("escape")
        assert app.screen is app.main_screen


async def test_enter_on_an_empty_list_says_why() -> None:
    notes = Notes()
    app = make_app(ScriptedRun(finished=0, in_flight=0))
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("2", "enter")
        assert app.screen is app.main_screen
    assert notes == ["no request to show: the list is empty"]


async def test_f_opens_the_failed_browser_and_escape_comes_back() -> None:
    app = make_app(ScriptedRun())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f")
        assert isinstance(app.screen, FailedScreen)
        await pilot.press("escape")
        assert app.screen is app.main_screen


async def test_f_without_failures_says_why() -> None:
    calls, notes = await press("f", ScriptedRun(finished=5))
    assert notes == ["no failed requests"]


async def test_run_keys_work_from_other_screens() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "p")
        await settle(pilot, "pause")
        assert control_calls(run) == [("pause",)]
        assert isinstance(app.screen, TrajectoryScreen)


async def test_tab_cycles_the_filters_and_digits_pick_one() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        table = app.main_screen.query_one(RequestTable)
        seen = []
        for _ in range(4):
            await pilot.press("tab")
            await pilot.pause()
            seen.append((table.row_filter, table.count, run.rows_asked[-1][0]))
        assert seen == [
            ("in_flight", 64, "in_flight"),
            ("retried", 163, "retried"),
            ("failed", 24, "failed"),
            ("all", 2_000, "all"),
        ]
        await pilot.press("4")
        await pilot.pause()
        assert table.row_filter == "failed"
        assert {row.state for row in run.rows("failed", 0, 24)} == {"failed"}
        assert "4 failed 24" in app.main_screen.query_one(FilterBar).render().plain
        await pilot.press("enter")
        assert app.screen.row.state == "failed"


async def test_the_summary_replaces_the_charts_when_the_run_returns() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main_screen
        assert not main.query_one("#summary").display
        run.finish(0)
        await settle(pilot, "run")
        assert main.has_class("-finished")
        assert main.query_one("#summary").display and not main.query_one("#charts").display
        summary = main.query_one("#summary").render().plain
        assert "Every request has a final record." in summary
        assert "runs/demo/results.jsonl" in summary
        assert "429 rate limit 18" in summary


async def test_a_run_that_raises_is_reported_and_the_app_stays() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        run.crash(OSError("disk full"))
        await settle(pilot, "run")
        assert notes == ["the run failed: disk full"]
        assert "The run stopped on an error: disk full" in app.main_screen.query_one("#summary").render().plain
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 1


async def test_the_loop_lag_probe_starts_with_the_run_not_with_the_app() -> None:
    run = ScriptedRun(state="starting")
    lag = FixedLag()
    app = make_app(run, lag_probe=lag)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert lag.started == 0  # the app's first layout and the run's start-up are not the loop's lag
        run.state = "running"
        app.main_screen.refresh_data()
        app.main_screen.refresh_data()
        assert lag.started == 1
    assert lag.stopped == 1


@pytest.mark.parametrize(
    ("state", "eta", "now"),
    [
        ("running", "ETA 0:14", "requests/s        58       51\ntokens/s        9.6k     8.4k"),
        ("paused", "ETA —", "requests/s         —       51\ntokens/s           —     8.4k"),
    ],
)
async def test_eta_and_rates_now_only_while_running(state: str, eta: str, now: str) -> None:
    app = make_app(ScriptedRun(state=state))
    async with app.run_test(size=SIZE):
        assert eta in app.main_screen.query_one(RunHeader).render().plain
        assert now in app.main_screen.query_one("#speed").render().plain


async def test_ctrl_c_does_what_q_does_and_asks_while_requests_are_in_flight() -> None:
    run = ScriptedRun(in_flight=5)
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        assert isinstance(app.screen, ConfirmQuitScreen)
        await pilot.press("y")
        await settle(pilot, "shutdown")
    assert control_calls(run) == [("shutdown",)]
    assert app.return_value == 130


async def test_ctrl_c_with_nothing_in_flight_saves_and_quits() -> None:
    run = ScriptedRun(state="paused", in_flight=0)
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        await settle(pilot, "shutdown")
    assert control_calls(run) == [("shutdown",)]


async def test_a_second_ctrl_c_stops_now_saves_and_quits() -> None:
    run = ScriptedRun(in_flight=5)
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("ctrl+c")
        assert isinstance(app.screen, ConfirmQuitScreen)
        await pilot.press("ctrl+c")
        await settle(pilot, "stop_now")
        await settle(pilot, "shutdown")
    assert control_calls(run) == [("stop_now",), ("shutdown",)]
    assert "ctrl+c again: stopping now, requests in flight go back to the queue" in notes
    assert app.return_value == 130


async def test_the_quit_dialog_follows_the_count_in_flight_and_closes_at_zero() -> None:
    run = ScriptedRun(in_flight=5)
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("q")
        dialog = app.screen
        assert isinstance(dialog, ConfirmQuitScreen)
        assert str(dialog.query_one("#quit-text").render()).startswith("5 requests in flight.")
        run.in_flight = 1
        dialog.update_count()
        await pilot.pause()
        assert str(dialog.query_one("#quit-text").render()).startswith("1 request in flight.")
        run.in_flight = 0
        dialog.update_count()
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
    assert control_calls(run) == []
    assert notes[-1] == "nothing is in flight any more: q saves and quits at once"


async def test_worker_changes_in_a_row_update_one_note_in_place() -> None:
    run = ScriptedRun(workers=11)
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("right_square_bracket", "plus", "plus", "minus", "right_square_bracket")
        await pilot.pause()
        # the notes as the app holds them to show (Textual keeps them in the private _notifications)
        shown = [note.message for note in app._notifications]
    assert notes == ["workers: 11 → 21", "workers: 11 → 22", "workers: 11 → 23", "workers: 11 → 22", "workers: 11 → 32"]
    assert shown == ["workers: 11 → 32"]


async def test_e_shows_the_event_log_and_escape_goes_back() -> None:
    run = ScriptedRun()
    run.events = (
        RunEvent(NOW - 3600, "pause", "paused: the cost budget is spent", earlier=True),
        RunEvent(NOW - 60, "open", "resumed: 1,200 of 2,000 requests finished earlier"),
        RunEvent(NOW - 10, "workers", "workers: 64 → 74"),
    )
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        assert isinstance(app.screen, EventsScreen)
        text = str(app.screen.query_one("#events").render())
        assert text.splitlines() == [
            "earlier runs of this output",
            "21:25:54  paused: the cost budget is spent",
            "this run",
            "22:24:54  resumed: 1,200 of 2,000 requests finished earlier",
            "22:25:44  workers: 64 → 74",
        ]
        run.events += (RunEvent(NOW, "save", "saved 1,300 results"),)
        app.screen.follow()
        await pilot.pause()
        assert str(app.screen.query_one("#events").render()).splitlines()[-1] == "22:25:54  saved 1,300 results"
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


@pytest.mark.parametrize(
    ("keys", "call"),
    [
        ("l5\t7\r", ("set_limits", 5.0, 7)),
        ("b12\t3.5\r", ("set_budget", 12, 3.5)),
        ("l5\t\x1b", None),  # escape typed at once too: nothing changes
    ],
)
async def test_a_dialog_takes_keys_typed_at_once_in_order(keys: str, call: tuple | None) -> None:
    run = ScriptedRun()
    run.prices = True  # a cost budget needs them
    app = make_app(run)
    named = {"\t": ("tab", None), "\r": ("enter", None), "\x1b": ("escape", None)}
    async with app.run_test(size=SIZE) as pilot:
        # all queued before any is handled, as a terminal delivers a burst (pilot.press waits after each)
        for char in keys:
            app.post_message(events.Key(*named.get(char, (char, char))))
        await settle(pilot)
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
    assert [c for c in run.calls if c[0] in ("set_limits", "set_budget")] == ([call] if call else [])


async def test_a_pause_reason_that_comes_later_grows_the_header_to_every_wrapped_line() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        header = app.screen.query_one(RunHeader)
        assert header.size.height == 2
        run.state, run.in_flight = "paused", 0
        run.reason = (
            "the server at http://127.0.0.1:8901/v1 cannot be reached (128 attempts in a row over 5 s failed to "
            "connect: cannot connect to 127.0.0.1:8901: [Errno 111] Connect call failed); check that it runs "
            "and the address, then resume"
        )
        app.main_screen.refresh_data()
        await pilot.pause()
        lines = header.render().plain.splitlines()
        assert len(lines) == 3 and lines[-1].endswith("then resume")
        # drawn, not only made: the header is as tall as its lines
        assert header.size.height == 3

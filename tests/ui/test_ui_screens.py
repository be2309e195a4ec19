"""The trajectory screen and the failed browser."""

from __future__ import annotations

import dataclasses
import json

from textual.widgets import OptionList
from ui_fakes import SIZE, Notes, ScriptedRun, make_app, settle

from tokenflow_tui.ui.screens.failed import FailedScreen
from tokenflow_tui.ui.widgets.failed import FailedList
from tokenflow_tui.ui.widgets.trajectory import TrajectoryView


def view_text(screen) -> str:
    return screen.query_one(TrajectoryView).query_one("Static").render().plain


async def test_trajectory_shows_every_attempt_in_full() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*["down"] * 7, "enter")
        text = view_text(app.screen)
        title = app.screen.query_one("#trajectory-title").render().plain
    assert title == "Request #7  id doc-000007  ·  failed  ·  4 attempts"
    for number, clock in enumerate(("22:13:23", "22:13:26", "22:13:29", "22:13:32"), 1):
        assert f"Attempt {number} · {clock} · " in text
    assert "Attempt 4 · 22:13:32 · 300 ms · status 429" in text
    assert '"content": "Summarise document 7."' in text
    assert "error · 429 rate limit\n  Rate limit reached for gpt-4o-mini: retry after 2 s" in text


async def test_trajectory_of_a_done_request_shows_the_answer_and_usage() -> None:
    app = make_app(ScriptedRun())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        text = view_text(app.screen)
    assert "Attempt 2 · 22:13:23 · 220 ms · status 200" in text
    assert "answer\n  Document 0 argues" in text
    assert '"finish_reason": "stop"' in text


async def test_trajectory_of_a_queued_request() -> None:
    app = make_app(ScriptedRun())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("end", "enter")
        assert view_text(app.screen) == "No attempt yet: the request is waiting in the queue."


async def test_trajectory_of_a_request_in_flight() -> None:
    app = make_app(ScriptedRun())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "down", "enter")  # request 1201, its first attempt under way
        assert app.screen.row.index == 1_201
        text = view_text(app.screen)
    assert text.startswith("Attempt 1 · 22:25:52 · —\nparams")
    assert text.endswith("in flight: no answer yet")


def title_text(screen) -> str:
    return screen.query_one("#trajectory-title").render().plain


async def test_trajectory_of_a_request_in_flight_follows_it_until_it_is_finished() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "down", "enter")  # request 1201, its first attempt under way
        screen = app.screen
        assert title_text(screen) == "Request #1201  id doc-001201  ·  in flight  ·  1 attempt"
        screen.follow()  # nothing changed: nothing repainted
        assert view_text(screen).endswith("in flight: no answer yet")
        run.advance(100)  # it finished
        screen.follow()
        await pilot.pause()
        assert title_text(screen) == "Request #1201  id doc-001201  ·  done  ·  1 attempt"
        assert view_text(screen).endswith(
            "answer\n  Document 1201 argues that small caches beat large ones "
            'when reads are local.\ndetails\n  {\n    "usage": {\n'
            '      "prompt_tokens": 120,\n      "completion_tokens": 45,\n'
            '      "total_tokens": 165\n    },\n    "finish_reason": "stop"\n  }'
        )
        assert screen._follow is not None and screen._follow._task is None  # finished: followed no more


class EndedAttemptsOnly(ScriptedRun):
    """Like the runner: the trajectory of a request in flight holds the attempts that have ended."""

    def trajectory(self, index: int) -> list[dict]:
        if index == 1_209:
            return super().trajectory(7)[:2]  # two attempts ended (429s), the third under way
        return [attempt for attempt in super().trajectory(index) if attempt["latency_ms"] is not None]

    def row(self, i: int):
        row = super().row(i)
        return dataclasses.replace(row, attempts=3) if i == 1_209 else row


async def test_trajectory_of_a_request_in_flight_says_which_attempt_is_under_way() -> None:
    app = make_app(EndedAttemptsOnly())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "down", "enter")  # request 1201: its first attempt under way
        assert title_text(app.screen) == "Request #1201  id doc-001201  ·  in flight  ·  1 attempt"
        assert view_text(app.screen) == "Attempt 1 is under way: it shows here once it has ended."
        await pilot.press("escape", *["down"] * 8, "enter")  # request 1209: two attempts ended, a third under way
        assert title_text(app.screen) == "Request #1209  id doc-001209  ·  in flight  ·  3 attempts"
        text = view_text(app.screen)
        assert "Attempt 2 · " in text and "Attempt 3 · " not in text
        assert text.endswith("\n\nAttempt 3 is under way: it shows here once it has ended.")


async def test_trajectory_of_a_finished_request_is_not_followed() -> None:
    app = make_app(ScriptedRun())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        assert app.screen._follow is None


async def test_c_copies_the_trajectory_as_json() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press(*["down"] * 7, "enter", "c")
        assert json.loads(app.clipboard) == run.trajectory(7)
    assert notes == ["copied the attempts of request #7 to the clipboard"]


async def open_failed(pilot) -> FailedScreen:
    await pilot.press("f")
    await pilot.pause()
    return pilot.app.screen


async def test_failed_browser_groups_by_kind_and_shows_the_selected_trajectory() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_failed(pilot)
        groups = screen.query_one(OptionList)
        labels = [groups.get_option_at_index(i).prompt.plain for i in range(groups.option_count)]
        assert [" ".join(label.split()) for label in labels] == [
            "429 rate limit 11",
            "5xx server 4",
            "timeout 3",
            "connection 3",
            "bad response 3",
        ]
        failed_list = screen.query_one(FailedList)
        assert failed_list.indexes == run.failed_groups()["http_429"]
        assert screen.query_one(TrajectoryView).border_title == "request #7"

        await pilot.press("down")  # the next kind
        await pilot.pause()
        assert failed_list.indexes == run.failed_groups()["http_5xx"] == [107, 457, 807, 1157]
        await pilot.press("tab", "down")  # into the requests, the second one
        await pilot.pause()
        assert failed_list.selected_index() == 457
        assert screen.query_one(TrajectoryView).border_title == "request #457"
        assert "error · 5xx server\n  Service Unavailable" in view_text(screen)


async def test_r_queues_the_selected_request_again() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        screen = await open_failed(pilot)
        await pilot.press("tab", "down", "r")
        await pilot.pause()
        assert run.calls[-1] == ("retry", (57,))
        failed_list = screen.query_one(FailedList)
        assert 57 not in failed_list.indexes
        assert screen.query_one(OptionList).get_option_at_index(0).prompt.plain.split()[-1] == "10"
        # the cursor keeps its place, on the request that followed: r again retries the next one
        assert failed_list.indexes[:3] == [7, 207, 357] and failed_list.selected_index() == 207
        assert screen.query_one(TrajectoryView).border_title == "request #207"
        await pilot.press("r")
        await pilot.pause()
        assert run.calls[-1] == ("retry", (207,))
        assert failed_list.selected_index() == 357
    assert notes == ["queued 1 request again", "queued 1 request again"]


async def test_failed_browser_follows_new_failures_and_keeps_the_selection() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_failed(pilot)
        await pilot.press("tab", "down")
        await pilot.pause()
        failed_list = screen.query_one(FailedList)
        assert failed_list.selected_index() == 57
        run.advance(400)  # 8 more failures: 3 of them 429s
        screen.refresh_groups()
        await pilot.pause()
        groups = screen.query_one(OptionList)
        labels = [" ".join(groups.get_option_at_index(i).prompt.plain.split()) for i in range(groups.option_count)]
        assert labels == ["429 rate limit 14", "5xx server 5", "timeout 5", "connection 4", "bad response 4"]
        assert screen.query_one("#failed-title").render().plain == "Failed requests  32 in 5 kinds of error"
        assert failed_list.indexes == run.failed_groups()["http_429"] and len(failed_list.indexes) == 14
        assert groups.highlighted_option.id == "http_429"
        assert failed_list.selected_index() == 57
        assert screen.query_one(TrajectoryView).border_title == "request #57"


async def test_failed_browser_keeps_the_selection_when_new_kinds_appear() -> None:
    run = ScriptedRun(finished=60)  # failed: 7 and 57, both 429s
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_failed(pilot)
        await pilot.press("tab", "down")
        await pilot.pause()
        run.advance(1_140)  # four more kinds: the kinds list is rebuilt
        screen.refresh_groups()
        await pilot.pause()
        groups = screen.query_one(OptionList)
        assert groups.option_count == 5
        assert groups.highlighted_option.id == "http_429"
        failed_list = screen.query_one(FailedList)
        assert len(failed_list.indexes) == 11 and failed_list.selected_index() == 57
        assert screen.query_one(TrajectoryView).border_title == "request #57"


async def test_R_queues_the_whole_kind_again() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        screen = await open_failed(pilot)
        indexes = list(run.failed_groups()["http_429"])
        await pilot.press("R")
        await pilot.pause()
        assert run.calls[-1] == ("retry", tuple(indexes))
        assert "http_429" not in run.failed_groups()
        assert screen.query_one(OptionList).highlighted_option.id == "http_5xx"
    assert notes == ["queued 11 requests again"]


async def test_retry_of_the_last_failures_leaves_an_empty_browser() -> None:
    run = ScriptedRun(finished=60)  # failed: 7 and 57, both 429s
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        screen = await open_failed(pilot)
        await pilot.press("R")
        await pilot.pause()
        assert screen.query_one(OptionList).option_count == 0
        # it says that none is left, and no title still names the kind or the request queued again
        assert screen.query_one("#failed-title").render().plain == "Failed requests  none left"
        failed_list = screen.query_one(FailedList)
        assert failed_list.border_title == "" and failed_list.render_line(0).text.strip() == "none left"
        assert screen.query_one(TrajectoryView).border_title == "trajectory"
        assert view_text(screen) == "No failed request is left: those queued again wait in the queue."
        await pilot.press("r", "R", "c")
        await pilot.pause()
    assert notes == ["queued 2 requests again", "no request selected", "no error kind selected", "no request selected"]


async def test_retry_of_a_request_that_is_not_failed_any_more_says_so() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await open_failed(pilot)
        run.retry([7])  # queued again behind the browser's back
        await pilot.press("r")
        await pilot.pause()
    assert notes == ["nothing queued: request #7 is no longer failed"]


async def test_retry_after_the_run_returned_runs_again_then_shows_the_summary() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        run.finish(0)
        await settle(pilot, "run")
        assert app.main_screen.has_class("-finished")
        await open_failed(pilot)
        await pilot.press("r")
        await pilot.pause()
        assert (run.calls.count(("run",)), app.run_code, app.main_screen.has_class("-finished")) == (2, None, False)
        run.finish(0)
        await settle(pilot, "run")
        assert (app.run_code, app.main_screen.has_class("-finished")) == (0, True)
    assert notes == ["queued 1 request again"]


class BrokenReads(ScriptedRun):
    """A run whose trajectory reads raise, and whose snapshots raise once `broken` is set."""

    broken = False

    def trajectory(self, index: int) -> list[dict]:
        raise AttributeError("'NoneType' object has no attribute 'get'")

    def snapshot(self):
        if self.broken:
            raise KeyError("stats")
        return super().snapshot()


async def test_a_read_that_raises_is_reported_once_and_the_dashboard_stays_up() -> None:
    run = BrokenReads()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("enter")
        assert view_text(app.screen) == "The attempts of this request could not be read."
        await pilot.press("escape", "enter", "escape")
        run.broken = True
        app.main_screen.refresh_data()  # the last snapshot is drawn again
        app.main_screen.refresh_data()
        await pilot.pause()
        assert app.screen is app.main_screen and app.is_running
        assert "1,176" in app.main_screen.query_one("#counts").render().plain
    assert notes == [
        "reading request #0 failed: AttributeError: 'NoneType' object has no attribute 'get'",
        "reading the run's numbers failed: KeyError: 'stats'",
    ]


class WaitingAtTheLimit(EndedAttemptsOnly):
    """Request 1201 is held back by the rate limit: waiting, not in flight."""

    def row(self, i: int):
        row = super().row(i)
        if i == 1_201:
            return dataclasses.replace(row, state="waiting", attempts=0, waiting_for="the rate limit")
        return row


async def test_trajectory_of_a_waiting_request_says_what_it_waits_for() -> None:
    app = make_app(WaitingAtTheLimit())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "down", "enter")  # request 1201
        assert title_text(app.screen) == "Request #1201  id doc-001201  ·  waiting  ·  0 attempts"
        assert view_text(app.screen) == "Attempt 1 is waiting for the rate limit: it is not sent yet."


async def test_a_copies_only_the_answer_text() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("enter", "a")  # request 0: done
        assert app.clipboard == run.trajectory(0)[-1]["result"]
        await pilot.press("escape", *["down"] * 7, "enter", "a")  # request 7: failed, no answer
        assert app.clipboard == run.trajectory(0)[-1]["result"]
    assert notes == ["copied the answer of request #0 to the clipboard", "request #7 has no answer to copy"]


async def test_the_trajectory_shows_the_body_that_was_sent_when_the_run_knows_it() -> None:
    run = ScriptedRun()
    sent = {"model": "gpt-4o-mini", "temperature": 0.2, "messages": [{"role": "user", "content": "Hi."}]}
    attempts = [{**run.trajectory(0)[0], "body": sent}]
    run.trajectory = lambda index: attempts  # type: ignore[method-assign]
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        text = view_text(app.screen)
        assert 'body sent\n  {\n    "model": "gpt-4o-mini",\n    "temperature": 0.2,' in text
        assert "params" not in text
        await pilot.press("c")
        assert json.loads(app.clipboard) == [{k: v for k, v in attempts[0].items() if k != "body"}]

"""Finding things in the dashboard: / n N (search), o (sort), ctrl+p (the command palette)."""

from __future__ import annotations

from textual.command import CommandList, CommandPalette
from ui_fakes import SIZE, Notes, ScriptedRun, make_app, settle

from tokenflow_tui.ui.screens.search import SearchPrompt
from tokenflow_tui.ui.widgets.requests import RequestTable, TableHeader


def table(app) -> RequestTable:
    return app.main_screen.query_one(RequestTable)


def search_line(app) -> str:
    line = app.main_screen.query_one("#search-line")
    return line.render_line(0).text.rstrip() if line.display else ""


async def search_for(pilot, query: str) -> None:
    await pilot.press("slash")
    assert isinstance(pilot.app.screen, SearchPrompt)
    await pilot.press(*query, "enter")
    await settle(pilot)


async def test_slash_searches_and_n_and_shift_n_go_to_the_next_and_previous_match() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await search_for(pilot, "doc-00042")  # doc-000420 … doc-000429
        assert ("search", "doc-00042") in run.calls
        assert table(app).cursor == 420
        assert search_line(app) == "/doc-00042  10 matches in 2,000   n next  N previous  / new search"
        await pilot.press("n", "n")
        assert table(app).cursor == 422
        await pilot.press("N", "N", "N")
        assert table(app).cursor == 429  # wrapped around backwards
        await pilot.press("n")
        assert table(app).cursor == 420
        assert [c for c in run.calls if c[0] == "find"][-1] == ("find", 429, 1, "all", "input")
        # / again shows the last query; escape leaves the search as it was
        await pilot.press("slash")
        assert app.screen.query_one("#search-input").value == "doc-00042"
        await pilot.press("escape")
        assert not isinstance(app.screen, SearchPrompt) and table(app).cursor == 420
        assert notes == []


async def test_a_search_under_way_shows_how_far_it_has_looked_then_jumps_to_the_first_match() -> None:
    run = ScriptedRun()
    run.search_done = False
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("down", "down")
        await search_for(pilot, "argues")  # the preview of every done row: 1,200 rows, 24 of them failed
        assert search_line(app) == "/argues  searching… 500 of 2,000 · 0 matches so far   / new search"
        await pilot.press("n")
        assert notes == ["no match so far"]
        run.search_done = True
        app.main_screen.refresh_data()
        assert search_line(app).startswith("/argues  1,176 matches in 2,000")
        assert table(app).cursor == 2  # the first match from where the cursor was


async def test_a_search_without_match_says_so_and_an_empty_one_ends_the_search() -> None:
    run = ScriptedRun()
    notes = Notes()
    app = make_app(run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.press("n")
        await search_for(pilot, "zzz")
        assert search_line(app) == "/zzz  0 matches in 2,000   / new search"
        await pilot.press("n")
        await pilot.press("slash", "backspace", "enter")  # the text is selected: one backspace clears it
        await settle(pilot)
        assert search_line(app) == "" and run.calls[-1][0] != "find"
        assert notes == ["no search: / starts one", "no match for 'zzz'"]


async def test_o_cycles_the_sort_shown_in_the_header() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        header = app.main_screen.query_one(TableHeader)
        seen = []
        for _ in range(4):
            await pilot.press("o")
            await settle(pilot)
            first = table(app).selected()
            seen.append((table(app).sort, header.note, first.index if first else None, table(app).count))
        # latency: 150 + (i * 37) % 900 for done rows, 1000 + i % 500 for failed ones (the slowest)
        slowest_failed = max(range(7, 1200, 50), key=lambda i: (1000 + i % 500, -i))
        assert seen == [
            ("latency", "finished, by latency ↓", slowest_failed, 1200),
            ("attempts", "finished, by attempts ↓", 7, 1200),  # failed rows took 3 or 4 attempts
            ("tokens", "finished, by tokens ↓", 996, 1200),
            ("input", "", 0, 2000),
        ]
        await pilot.press("2", "o")  # in flight: no order but the input's
        await settle(pilot)
        assert header.note == "not sorted by latency: in flight"


async def test_a_sort_being_built_says_how_far_it_is() -> None:
    run = ScriptedRun()
    run.sort_ready = False
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")
        await settle(pilot)
        assert app.main_screen.query_one(TableHeader).note == "sorting by latency… 33 %"
        assert table(app).count == 2000  # input order meanwhile
        run.sort_ready = True
        app.main_screen.refresh_data()
        assert table(app).count == 1200


async def test_the_command_palette_lists_every_action_with_its_key_and_runs_one() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert isinstance(app.screen, CommandPalette)
        for _ in range(50):
            commands = app.screen.query_one(CommandList)
            if commands.option_count:
                break
            await pilot.pause(0.02)
        listed = [str(commands.get_option_at_index(i).prompt).split("\n")[0] for i in range(commands.option_count)]
        for text in (
            "pause/resume  (p)",
            "stop now  (x)",
            "+10  (])",
            "save  (s)",
            "quit  (q ^q)",
            "help  (?)",
            "sort  (o)",
            "search  (/)",
            "next match  (n)",
            "previous match  (N)",
            "limits  (l)",
            "failed  (4)",
            "trajectory  (⏎)",
        ):
            assert text in listed
        assert not any("Scroll" in text or "palette" in text for text in listed)
        await pilot.press(*"sort", "enter")
        await settle(pilot)
        for _ in range(50):
            if not isinstance(app.screen, CommandPalette) and table(app).sort == "latency":
                break
            await pilot.pause(0.02)
        assert table(app).sort == "latency"


async def test_the_help_lists_the_keys_of_finding_things() -> None:
    from tokenflow_tui.ui.screens.dialogs import HelpScreen

    app = make_app(ScriptedRun())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        rows = [
            " ".join(static.render().plain for static in row.query("Static")) for row in app.screen.query(".help-key")
        ]
        for row in (
            "/ search every request by id, or text of its params or its answer",
            "n the next match of the search",
            "N the previous match of the search",
            "o sort the table: input order, then finished requests by latency, attempts, tokens (largest first)",
            "^p the command palette: every action of this screen with its key, found by typing",
        ):
            assert row in rows


REAL_HANDLER = """
from tokenflow import ActionDone


async def handler(trajectory):
    item = trajectory.last().request_params["item"]
    usage = {"prompt_tokens": 5, "completion_tokens": item % 13, "total_tokens": 5 + item % 13}
    return ActionDone(), {"text": "a giraffe" if item % 9 == 0 else "a horse"}, {"usage": usage}
"""


async def test_search_and_sort_on_the_real_runner_through_the_dashboard(tmp_path) -> None:
    import json

    from run_helpers import write_job

    from tokenflow_tui.job.reader import load_job
    from tokenflow_tui.run.runner import JobRunner

    (tmp_path / "handler.py").write_text(REAL_HANDLER)
    with (tmp_path / "in.jsonl").open("w") as out:
        for i in range(300):
            out.write(json.dumps({"id": f"q{i}", "item": i, "prompt": f"about item {i}"}) + "\n")
    path = write_job(
        tmp_path,
        {"job": {"name": "find", "input": "in.jsonl", "output": "out"}, "handler": {"path": "handler.py:handler"}},
    )
    runner = JobRunner(load_job(path), save_interval_s=3600)
    runner.open()
    app = make_app(runner)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(500):
            if app.run_code is not None:
                break
            await pilot.pause(0.01)
        assert app.run_code == 0
        await search_for(pilot, "GIRAFFE")
        for _ in range(500):
            app.main_screen.refresh_data()
            if search_line(app).startswith("/GIRAFFE  34 matches in 300"):
                break
            await pilot.pause(0.01)
        assert search_line(app) == "/GIRAFFE  34 matches in 300   n next  N previous  / new search"
        await pilot.press("n", "n")
        assert table(app).cursor == 18
        assert table(app).selected().matched
        await pilot.press("o", "o", "o")  # tokens
        for _ in range(500):
            app.main_screen.refresh_data()
            if app.main_screen.query_one(TableHeader).note == "finished, by tokens ↓":
                break
            await pilot.pause(0.01)
        # 17 tokens for items 12, 25, 38, … (first in the order); the first giraffe among them is 90 (12 + 13 * 6)
        assert table(app).selected().index == 12
        await pilot.press("n")
        assert table(app).selected().index == 90
    runner.close()

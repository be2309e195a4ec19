"""The dashboard on a small terminal (80×24): nothing cut that a user needs, no text wrapped to the margin."""

from __future__ import annotations

from textual.widgets._footer import FooterKey
from ui_fakes import ScriptedRun, make_app, settle

from tokenflow_tui.ui.screens.dialogs import HelpScreen
from tokenflow_tui.ui.screens.failed import FailedScreen
from tokenflow_tui.ui.widgets.footer import KeyFooter
from tokenflow_tui.ui.widgets.requests import RequestTable
from tokenflow_tui.ui.widgets.trajectory import TrajectoryView

SMALL = (80, 24)


async def press(pilot, *keys: str) -> None:
    """Press the keys, then let the app take in what they did."""
    await pilot.press(*keys)
    await pilot.pause()


async def test_help_and_quit_lead_the_footer_so_a_narrow_terminal_does_not_cut_them() -> None:
    app = make_app(ScriptedRun())
    async with app.run_test(size=SMALL) as pilot:
        for keys in ((), ("f",), ("escape", "enter")):
            await press(pilot, *keys)
            footer_keys = list(app.screen.query_one(KeyFooter).query(FooterKey))
            assert [key.key for key in footer_keys[:2]] == ["question_mark", "q"]
            assert all(key.region.right <= SMALL[0] for key in footer_keys[:2])
            assert len({key.key for key in footer_keys}) == len(footer_keys)  # not shown twice


async def test_the_failed_browser_puts_the_trajectory_under_the_lists_when_narrow() -> None:
    app = make_app(ScriptedRun())
    async with app.run_test(size=SMALL) as pilot:
        await press(pilot, "f")
        assert isinstance(app.screen, FailedScreen)
        groups, requests = app.screen.query_one("#failed-groups"), app.screen.query_one("#failed-list")
        trajectory = app.screen.query_one(TrajectoryView)
        assert groups.region.y == requests.region.y and requests.region.right == SMALL[0]
        assert trajectory.region.x == 0 and trajectory.region.width == SMALL[0]
        assert trajectory.region.y == groups.region.bottom
    app = make_app(ScriptedRun())
    async with app.run_test(size=(120, 40)) as pilot:  # wide enough: side by side
        await press(pilot, "f")
        trajectory = app.screen.query_one(TrajectoryView)
        assert trajectory.region.x == 68 and trajectory.region.y == app.screen.query_one("#failed-list").region.y


async def test_a_wrapped_line_of_a_trajectory_stays_under_its_key() -> None:
    app = make_app(ScriptedRun())
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "f")
        view = app.screen.query_one(TrajectoryView)
        text = view.query_one("Static").render().plain
        # beside the lists: the message of the 429 does not fit after its two-cell indent
        assert "  Rate limit reached for gpt-4o-mini: retry after 2 s" not in text
        lines = text.splitlines()
        first = next(n for n, line in enumerate(lines) if line.startswith("  Rate limit reached"))
        assert lines[first + 1].startswith("    ") and lines[first + 1].strip()
        assert max(len(line) for line in lines) <= view.content_region.width - 2
        await pilot.resize_terminal(200, 40)  # wider: laid out again for the new width
        await pilot.pause()
        assert "  Rate limit reached for gpt-4o-mini: retry after 2 s" in view.query_one("Static").render().plain


async def test_the_help_fits_a_small_terminal_and_wraps_beside_its_keys() -> None:
    app = make_app(ScriptedRun())
    async with app.run_test(size=SMALL) as pilot:
        await press(pilot, "question_mark")
        assert isinstance(app.screen, HelpScreen)
        dialog = app.screen.query_one("#help-dialog")
        assert dialog.region.x >= 0 and dialog.region.right <= SMALL[0]
        texts = [what for what in app.screen.query(".what") if "pause softly" in what.render().plain]
        assert len(texts) == 1 and texts[0].region.height == 2  # wrapped in its own column
        assert texts[0].region.x == app.screen.query(".key").first().region.right


async def test_an_empty_filter_says_so() -> None:
    app = make_app(ScriptedRun(in_flight=0))
    async with app.run_test(size=SMALL) as pilot:
        await press(pilot, "2")
        table = app.screen.query_one(RequestTable)
        assert table.count == 0
        assert table.render_line(0).text.rstrip() == "no request in flight now"
        assert table.render_line(1).text.strip() == ""
        await press(pilot, "4")
        assert table.count == 24 and table.render_line(0).text.split()[:3] == ["7", "doc-000007", "failed"]


async def test_the_summary_of_a_finished_run_fits_a_small_terminal() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SMALL) as pilot:
        run.finish(0)
        await settle(pilot, "run")
        app.main_screen.refresh_data()  # as the next beat does, the panel now laid out
        summary = app.main_screen.query_one("#summary")
        lines = summary.render().plain.splitlines()
        assert lines[2] == "failures  429 rate limit 18 · 5xx server 6 · timeout 6 · 2 more (f)"
        assert max(len(line) for line in lines) <= summary.size.width == 76

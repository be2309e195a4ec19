"""The request table draws a million rows by fetching only what is visible; hidden screens do no work."""

from __future__ import annotations

from ui_fakes import SIZE, FixedLag, ScriptedRun, make_app

from tokenflow_tui.ui.widgets.requests import RequestTable

# refreshes only when a test calls refresh_data, so that it can count what each one does
NO_TIMER = {"refresh_s": 3600, "chart_refresh_s": 3600}


def fetched(run: ScriptedRun) -> int:
    return sum(stop - start for _, start, stop in run.rows_asked)


async def test_a_million_rows_scroll_fetching_only_visible_rows() -> None:
    run = ScriptedRun(total=1_000_000, finished=600_000)
    app = make_app(run, **NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = app.main_screen.query_one(RequestTable)
        height = table.scrollable_content_region.height
        assert table.count == 1_000_000
        assert table.virtual_size.height == 1_000_000
        assert 0 < fetched(run) <= height

        for keys, cursor in (
            (["end"], 999_999),
            (["pageup", "pageup"], 999_999 - 2 * (height - 1)),
            (["home"], 0),
            (["pagedown"], height - 1),
            (["down"] * 3, height + 2),
        ):
            asked_before = len(run.rows_asked)
            await pilot.press(*keys)
            await pilot.pause()
            assert table.cursor == cursor
            assert table.selected().index == cursor
            # a screenful at most for each move
            assert all(stop - start <= height for _, start, stop in run.rows_asked[asked_before:])
            assert table.scroll_offset.y <= cursor < table.scroll_offset.y + height
        assert fetched(run) < 12 * height


async def test_each_refresh_fetches_the_visible_rows_once_more() -> None:
    run = ScriptedRun(total=1_000_000, finished=600_000)
    app = make_app(run, **NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = app.main_screen.query_one(RequestTable)
        await pilot.pause()
        asked = len(run.rows_asked)
        # repaints without a refresh come from the cache
        table.refresh()
        await pilot.pause()
        assert len(run.rows_asked) == asked
        app.main_screen.refresh_data()
        await pilot.pause()
        assert run.rows_asked[asked:] == [("all", 0, table.scrollable_content_region.height)]


async def test_a_refresh_repaints_only_the_rows_that_changed() -> None:
    run = ScriptedRun(finished=10, in_flight=5)
    app = make_app(run, **NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main_screen.query_one(RequestTable)
        repainted: list[int] = []
        table.refresh_line = repainted.append  # type: ignore[method-assign]
        app.main_screen.refresh_data()
        assert repainted == []
        run.advance(2)  # 10 and 11 finish, 15 and 16 start
        app.main_screen.refresh_data()
        assert repainted == [10, 11, 15, 16]


async def test_a_new_filter_starts_at_the_top() -> None:
    run = ScriptedRun()
    app = make_app(run)
    async with app.run_test(size=SIZE) as pilot:
        table = app.main_screen.query_one(RequestTable)
        await pilot.press("end")
        assert table.cursor == 1_999 and table.scroll_offset.y > 0
        await pilot.press("4")
        await pilot.pause()
        assert (table.cursor, table.scroll_offset.y) == (0, 0)
        assert table.selected().index == 7


async def test_hidden_dashboard_pulls_nothing_and_catches_up_when_shown() -> None:
    run = ScriptedRun()
    app = make_app(run, refresh_s=0.01, chart_refresh_s=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        await pilot.pause()
        snapshots, asked = run.snapshots, len(run.rows_asked)
        # a negative check: a dozen refresh periods pass, and none of them does anything
        await pilot.pause(0.15)
        assert (run.snapshots, len(run.rows_asked)) == (snapshots, asked)
        await pilot.press("escape")
        await pilot.pause()
        assert run.snapshots > snapshots


async def beats(app, n: int) -> tuple[int, list[int], list[int]]:
    """Run `n` beats of the refresh timer by hand; the snapshots pulled, and the beats on which the
    throughput chart and the error chart were asked to repaint."""
    main = app.main_screen
    painted: dict[str, list[int]] = {"throughput": [], "tokens-chart": [], "errors": [], "latency-chart": []}
    for chart in main._widgets.charts:
        # counted, not drawn
        chart.show_history = lambda _, beats_of=painted[chart.id]: beats_of.append(beat)
    before = app.control.inner.snapshots
    for beat in range(1, n + 1):  # noqa: B007 - read by the lambdas above
        main.tick()
    # the tokens chart keeps the throughput chart's beats, the latency chart the error chart's
    assert (painted["tokens-chart"], painted["latency-chart"]) == (painted["throughput"], painted["errors"])
    return app.control.inner.snapshots - before, painted["throughput"], painted["errors"]


async def test_each_beat_pulls_the_numbers_and_each_chart_repaints_every_fourth_on_a_beat_of_its_own() -> None:
    app = make_app(ScriptedRun(), lag_probe=FixedLag(3.0), refresh_s=3600, chart_refresh_s=4 * 3600)
    async with app.run_test(size=SIZE):
        assert await beats(app, 8) == (8, [4, 8], [2, 6])


async def test_a_late_loop_is_pulled_half_as_often_and_the_charts_keep_their_pace() -> None:
    app = make_app(ScriptedRun(), lag_probe=FixedLag(250.0), refresh_s=3600, chart_refresh_s=4 * 3600)
    async with app.run_test(size=SIZE):
        assert await beats(app, 8) == (4, [4, 8], [2, 6])

"""The dashboard: the run at a glance, refreshed on a timer, and the table of requests."""

from __future__ import annotations

from functools import cached_property

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen, Screen
from textual.timer import Timer

from ...run.contract import ROW_FILTERS, RunSnapshot
from ..context import DashboardContext
from ..widgets.charts import ErrorChart, HistoryChart, LatencyChart, ThroughputChart, TokensChart
from ..widgets.footer import KeyFooter
from ..widgets.numbers import counts_content, latency_content, speed_content, tokens_content
from ..widgets.panel import LivePanel
from ..widgets.requests import FILTER_LABELS, RequestsPanel
from ..widgets.rules import RulesPanel
from ..widgets.status import RunHeader, RunProgress
from ..widgets.summary import summary_content
from ..widgets.traffic import TrafficPanel
from .events import EventsScreen
from .failed import FailedScreen
from .search import SearchPrompt
from .trajectory import TrajectoryScreen

# one footer entry for both keys, "l b" rather than "lb" (which reads as pounds): the footer fits 120 columns
_TRAFFIC = Binding.Group("traffic", compact=False)
# a loop whose callbacks run this late is saturated (DESIGN §5 asks p99 ≤ 100 ms)
BUSY_LAG_MS = 100.0


class _Widgets:
    """The widgets a refresh repaints, looked up once rather than on every beat."""

    def __init__(self, screen: Screen[None]) -> None:
        self.header = screen.query_one(RunHeader)
        self.progress = screen.query_one(RunProgress)
        self.counts, self.speed, self.latency, self.tokens, self.summary = (
            screen.query_one(f"#{name}", LivePanel) for name in ("counts", "speed", "latency", "tokens", "summary")
        )
        self.traffic = screen.query_one(TrafficPanel)
        self.rules = screen.query_one(RulesPanel)
        # two by two in the order of their beats (see MainScreen.tick)
        self.charts: list[HistoryChart] = [
            screen.query_one(ThroughputChart),
            screen.query_one(TokensChart),
            screen.query_one(ErrorChart),
            screen.query_one(LatencyChart),
        ]
        self.requests = screen.query_one(RequestsPanel)


class MainScreen(Screen[None]):
    # the four panels of numbers need 116 columns, three of them 88; four charts 160 (see the .tcss)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (88, "-medium"), (116, "-wide"), (160, "-xwide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    BINDINGS = [
        Binding(
            "enter",
            "open_trajectory",
            "trajectory",
            id="trajectory",
            tooltip="the selected request's attempts, in full",
        ),
        Binding(
            "f",
            "failed",
            "failed",
            id="failed",
            tooltip="failed requests grouped by error kind; queue them again from there",
        ),
        Binding(
            "tab",
            "cycle_filter",
            "filter",
            id="cycle_filter",
            tooltip="show all requests, those in flight, those retried, those failed",
        ),
        Binding(
            "o",
            "cycle_sort",
            "sort",
            show=False,  # the footer keeps its room for the run's keys; ? and ctrl+p list these
            id="cycle_sort",
            tooltip="sort the table: input order, then finished requests by latency, attempts, tokens (largest first)",
        ),
        Binding(
            "slash",
            "search",
            "search",
            key_display="/",
            show=False,
            id="search",
            tooltip="search every request by id, or text of its params or its answer",
        ),
        Binding("n", "find(1)", "next match", show=False, id="next_match", tooltip="the next match of the search"),
        Binding(
            "N",
            "find(-1)",
            "previous match",
            show=False,
            id="previous_match",
            tooltip="the previous match of the search",
        ),
        Binding(
            "e",
            "events",
            "events",
            id="events",
            tooltip="the event log: pauses and why, changes, saves, holds, resumes (also in events.jsonl)",
        ),
        # on the dashboard only, where the traffic panel shows what they change
        Binding(
            "l",
            "app.limits",
            "limits",
            id="limits",
            group=_TRAFFIC,
            priority=True,  # opens its dialog before the next key is read: keys typed at once go to it
            tooltip="change the rate limits: requests and tokens per minute, shared by all workers",
        ),
        Binding(
            "b",
            "app.budget",
            "budget",
            id="budget",
            group=_TRAFFIC,
            priority=True,  # opens its dialog before the next key is read: keys typed at once go to it
            tooltip="change the budgets (total tokens, cost) at which the job pauses",
        ),
        Binding(
            "t",
            "app.reset_traffic",
            "reset traffic control",
            id="reset_traffic",
            group=_TRAFFIC,
            tooltip="forget the pace, the holds and the limits read from the server's 429s (the job's limits stay)",
        ),
        *(
            Binding(
                str(number),
                f"filter('{name}')",
                FILTER_LABELS[name],
                show=False,
                id=f"filter_{name}",
                tooltip=f"show {FILTER_LABELS[name]} requests",
            )
            for number, name in enumerate(ROW_FILTERS, 1)
        ),
    ]

    def __init__(self, context: DashboardContext) -> None:
        super().__init__()
        self.context = context
        self.snapshot: RunSnapshot | None = None
        self.exit_code: int | None = None  # set once the run has returned
        self.run_error: str | None = None
        self._refresh_timers: list[Timer] = []
        self._lag_started = False
        self._ticks = 0
        self._chart_every = 1  # beats of the refresh timer between two chart repaints

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        yield RunProgress(id="run-progress")
        with Horizontal(id="numbers"):
            for name in ("counts", "speed", "latency", "tokens"):
                yield LivePanel(id=name, classes="numbers")
        yield TrafficPanel(id="traffic")
        yield RulesPanel(id="rules")
        with Horizontal(id="charts"):
            yield ThroughputChart(id="throughput")
            yield TokensChart(id="tokens-chart")
            yield ErrorChart(id="errors")
            yield LatencyChart(id="latency-chart")
        yield LivePanel(id="summary")
        yield RequestsPanel(self.context.control, id="requests")
        yield KeyFooter()

    def on_mount(self) -> None:
        titles = {
            "counts": "requests",
            "speed": "speed",
            "latency": "latency",
            "tokens": "tokens",
            "throughput": "finished requests / s",
            "tokens-chart": "tokens / s",
            "errors": "errors by kind / s",
            "latency-chart": "latency p50 (dark) · p95",
            "summary": "finished",
            "traffic": "traffic control",
            "rules": "checks and retry rules",
        }
        for widget_id, title in titles.items():
            self.query_one(f"#{widget_id}").border_title = title
        # one timer for numbers and charts, so that a chart's second is painted in the same frame as
        # the numbers rather than in a frame of its own
        self._chart_every = max(1, round(self.context.chart_refresh_s / self.context.refresh_s))
        self._refresh_timers = [self.set_interval(self.context.refresh_s, self.tick, name="refresh")]
        self.query_one("#request-table").focus()
        self.refresh_data()
        self.refresh_charts()

    def on_screen_suspend(self) -> None:
        # under a modal dialog the dashboard is still in view, so it keeps refreshing
        if not isinstance(self.app.screen, ModalScreen):
            for timer in self._refresh_timers:
                timer.pause()

    def on_screen_resume(self) -> None:
        for timer in self._refresh_timers:
            timer.resume()
        if self.is_mounted:
            self.refresh_data()
            self.refresh_charts()

    @cached_property
    def _widgets(self) -> _Widgets:
        # on first use, not on mount: the run may return (show_finished) before the screen is mounted
        return _Widgets(self)

    def tick(self) -> None:
        """One beat of the refresh timer: the numbers and rows, and every few beats a chart.

        The two charts repaint on different beats, half a chart period apart, so that no frame
        draws both on top of the numbers. While the loop is late (its lag p99 above BUSY_LAG_MS)
        the run has no time to spare: every other beat is skipped, so the dashboard pulls and paints
        half as often (the charts' beats are even ones, so they keep their pace).
        """
        self._ticks += 1
        lag = self.context.lag.p99_ms()
        if lag is not None and lag > BUSY_LAG_MS and self._ticks % 2:
            return
        self.refresh_data()
        phase = self._ticks % self._chart_every
        if self.snapshot is not None:
            # the rate charts on one beat, errors and latency on the beat half a period later: even beats
            for number, chart in enumerate(self._widgets.charts):
                if phase == (number // 2) * 2 * (self._chart_every // 4):
                    chart.show_history(self.snapshot.history)

    def refresh_data(self) -> None:
        """Pull a snapshot and the visible rows, and repaint what changed."""
        context, widgets = self.context, self._widgets
        snapshot = self.snapshot = context.control.snapshot()
        if not self._lag_started and snapshot.state != "starting":
            self._lag_started = True
            context.lag.start()
        with self.app.batch_update():
            widgets.header.show_snapshot(snapshot, context.clock(), context.tz)
            widgets.progress.show_stats(snapshot.stats)
            widgets.counts.set_content(counts_content(snapshot))
            widgets.speed.set_content(speed_content(snapshot, context.lag.p99_ms()))
            widgets.latency.set_content(latency_content(snapshot))
            widgets.tokens.set_content(tokens_content(snapshot))
            widgets.traffic.show_traffic(snapshot.traffic, snapshot.endpoints)
            widgets.rules.show_rules(snapshot.rules)
            if self.exit_code is not None:
                widgets.summary.set_content(
                    summary_content(snapshot, self.exit_code, self.run_error, widgets.summary.size.width)
                )
            widgets.requests.refresh_rows()

    def refresh_charts(self) -> None:
        if self.snapshot is not None:
            for chart in self._widgets.charts:
                chart.show_history(self.snapshot.history)

    def on_resize(self) -> None:
        self.call_after_refresh(self._share_window)

    def _share_window(self) -> None:
        """Every chart shows the seconds the narrowest one in view can hold: the same window."""
        charts = [chart for chart in self._widgets.charts if chart.display and chart.size.width]
        if not charts:
            return
        window = min(chart.plot_width for chart in charts)
        for chart in self._widgets.charts:
            chart.set_window(window)
        errors = self._widgets.charts[2]
        errors.border_subtitle = f"last {window} s"

    def show_finished(self, exit_code: int, error: str | None = None) -> None:
        """The run has returned: the summary takes the charts' place."""
        self.exit_code, self.run_error = exit_code, error
        self.add_class("-finished")
        if self.is_mounted:  # a run that returns at once (a stopped run, opened to be looked at) is drawn on mount
            self.refresh_data()

    def action_cycle_filter(self) -> None:
        self.query_one(RequestsPanel).cycle_filter()

    def action_filter(self, row_filter: str) -> None:
        self.query_one(RequestsPanel).set_filter(row_filter)

    def action_cycle_sort(self) -> None:
        self.query_one(RequestsPanel).cycle_sort()

    def action_search(self) -> None:
        panel = self.query_one(RequestsPanel)

        def searched(query: str | None) -> None:
            if query is not None:
                panel.start_search(query)

        self.app.push_screen(SearchPrompt(panel.search.query), searched)

    def action_find(self, direction: int) -> None:
        why_not = self.query_one(RequestsPanel).find(direction)
        if why_not is not None:
            self.notify(why_not, severity="warning")

    def action_open_trajectory(self) -> None:
        row = self.query_one(RequestsPanel).selected()
        if row is None:
            self.notify("no request to show: the list is empty", severity="warning")
            return
        self.app.push_screen(TrajectoryScreen(self.context, row))

    def action_events(self) -> None:
        self.app.push_screen(EventsScreen(self.context))

    def action_failed(self) -> None:
        groups = self.context.control.failed_groups()
        if not any(groups.values()):
            self.notify("no failed requests", severity="warning")
            return
        self.app.push_screen(FailedScreen(self.context, groups))

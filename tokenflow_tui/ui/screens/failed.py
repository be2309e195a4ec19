"""The failed requests, grouped by the error kind of their last attempt, each with its trajectory."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import OptionList

from ..context import DashboardContext
from ..formatting import error_label, ordered_kinds, plural
from ..widgets.failed import FailedList, group_option
from ..widgets.footer import KeyFooter
from ..widgets.line_list import LineList
from ..widgets.panel import LivePanel
from ..widgets.trajectory import TrajectoryView
from .trajectory import BACK, COPY

NONE_LEFT = "No failed request is left: those queued again wait in the queue."


class FailedScreen(Screen[None]):
    # beside the two lists (68 columns) a trajectory needs 40 to be read (see the .tcss)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        BACK,
        Binding("r", "retry_one", "retry", id="retry_one", tooltip="queue the selected request again"),
        Binding(
            "R",
            "retry_group",
            "retry all of kind",
            id="retry_group",
            tooltip="queue every request of the selected error kind again",
        ),
        COPY,
    ]

    class Queued(Message):
        """Failed requests were queued again: a run that has returned must run again for them (the app does)."""

    def __init__(self, context: DashboardContext, groups: dict[str, list[int]]) -> None:
        super().__init__()
        self.context = context
        self.groups = groups

    def compose(self) -> ComposeResult:
        yield LivePanel(id="failed-title")
        with Container(id="failed-body"):  # a grid: see the .tcss
            yield OptionList(id="failed-groups")
            yield FailedList(self.context.control, id="failed-list")
            yield TrajectoryView(id="failed-trajectory")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#failed-groups").border_title = "error kind"
        self.query_one("#failed-trajectory").border_title = "trajectory"
        self._show_groups(None)
        self.query_one("#failed-groups").focus()
        # failures go on arriving while the job runs: the lists follow, at the charts' pace
        self.set_interval(self.context.chart_refresh_s, self.refresh_groups, name="failed-groups")

    def refresh_groups(self) -> None:
        """Pull the groups again; redraw only when they changed, keeping the selected kind and request."""
        groups = self.context.control.failed_groups()
        if groups != self.groups:
            self.groups = groups
            self._show_groups(self._selected_kind())

    def _show_groups(self, keep: str | None) -> None:
        """Fill the kinds list from `self.groups`, keeping the kind `keep` selected when it is still there."""
        kinds = ordered_kinds(self.groups)
        total = sum(len(self.groups[kind]) for kind in kinds)
        counted = f"  {total:,} in {plural(len(kinds), 'kind')} of error" if kinds else "  none left"
        self.query_one("#failed-title", LivePanel).set_content(Content.assemble(("Failed requests", "bold"), counted))
        options = self.query_one("#failed-groups", OptionList)
        failed_list = self.query_one(FailedList)
        shown = [option.id for option in options.options]
        if kinds and kinds == shown:
            # the same kinds: new counts in place, so the highlight (and the list under it) stays
            for kind in kinds:
                options.replace_option_prompt(kind, group_option(kind, len(self.groups[kind])).prompt)
            failed_list.update_indexes(self.groups.get(keep or "", []))
            return
        options.clear_options()
        options.add_options([group_option(kind, len(self.groups[kind])) for kind in kinds])
        if kinds:
            # fires OptionHighlighted: `_group_highlighted` shows the kind's requests
            options.highlighted = kinds.index(keep) if keep in kinds else 0
        else:
            # all queued again (or never any): no kind, no request, so no title naming one
            failed_list.kind = None
            failed_list.border_title = ""
            failed_list.show_indexes([])
            view = self.query_one(TrajectoryView)
            view.border_title = "trajectory"
            view.show_attempts([], self.context.tz, empty=NONE_LEFT)

    def _selected_kind(self) -> str | None:
        options = self.query_one("#failed-groups", OptionList)
        option = options.highlighted_option
        return None if option is None else option.id

    @on(OptionList.OptionHighlighted, "#failed-groups")
    def _group_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        kind = event.option.id or ""
        failed_list = self.query_one(FailedList)
        failed_list.border_title = error_label(kind)
        if kind == failed_list.kind:
            failed_list.update_indexes(self.groups.get(kind, []))
        else:
            failed_list.kind = kind
            failed_list.show_indexes(self.groups.get(kind, []))

    @on(LineList.Highlighted, "#failed-list")
    def _request_highlighted(self, event: LineList.Highlighted) -> None:
        index = self.query_one(FailedList).selected_index()
        if index is not None:
            view = self.query_one(TrajectoryView)
            view.border_title = f"request #{index}"
            view.show_attempts(self.context.control.trajectory(index), self.context.tz)

    def action_retry_one(self) -> None:
        index = self.query_one(FailedList).selected_index()
        if index is None:
            self.notify("no request selected", severity="warning")
            return
        self._retry([index], f"request #{index} is")

    def action_retry_group(self) -> None:
        kind = self._selected_kind()
        if kind is None:
            self.notify("no error kind selected", severity="warning")
            return
        self._retry(self.groups[kind], f"the {error_label(kind)} requests are")

    def _retry(self, indexes: list[int], what: str) -> None:
        if self.context.read_only:
            self.notify("watching read-only: `tokenflow attach` queues requests again", severity="warning")
            return
        control = self.context.control
        queued = control.retry(indexes)
        if queued:
            self.notify(f"queued {plural(queued, 'request')} again")
            self.post_message(self.Queued())
        else:
            self.notify(f"nothing queued: {what} no longer failed", severity="warning")
        self.groups = control.failed_groups()
        self._show_groups(self._selected_kind())

    def action_copy(self) -> None:
        index = self.query_one(FailedList).selected_index()
        if index is None:
            self.notify("no request selected", severity="warning")
            return
        self.query_one(TrajectoryView).copy_all()
        self.notify(f"copied the attempts of request #{index} to the clipboard")

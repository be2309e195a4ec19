"""One request's whole trajectory."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.timer import Timer

from ...run.contract import RequestRow
from ..context import DashboardContext
from ..formatting import plural
from ..widgets.footer import KeyFooter
from ..widgets.panel import LivePanel
from ..widgets.trajectory import QUEUED, TrajectoryView

BACK = Binding("escape", "app.pop_screen", "back", id="back", tooltip="back to the previous screen")
COPY = Binding("c", "copy", "copy JSON", id="copy", tooltip="copy the attempts, as JSON, to the clipboard")
COPY_ANSWER = Binding("a", "copy_answer", "copy answer", id="copy_answer", tooltip="copy only the answer's text")


# a request in these states has its final record: its trajectory no longer changes
FINISHED = ("done", "failed")


class TrajectoryScreen(Screen[None]):
    """The attempts of one request; followed live until the request is finished."""

    BINDINGS = [BACK, COPY, COPY_ANSWER]

    def __init__(self, context: DashboardContext, row: RequestRow) -> None:
        super().__init__()
        self.context = context
        self.row = row
        self.attempts: list[dict[str, Any]] = []
        self._follow: Timer | None = None

    def compose(self) -> ComposeResult:
        yield LivePanel(id="trajectory-title")
        yield TrajectoryView(id="trajectory")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._show(self.context.control.trajectory(self.row.index), scroll_home=True)
        self.query_one(TrajectoryView).focus()
        if self.row.state not in FINISHED:
            # the row was taken when enter was pressed: an attempt may end while the screen is open
            self._follow = self.set_interval(self.context.refresh_s, self.follow, name="follow")

    def follow(self) -> None:
        """Pull the request's row and attempts again; repaint only when they changed."""
        control, index = self.context.control, self.row.index
        rows = control.rows("all", index, index + 1)  # in the "all" list, position = input index
        if rows:
            self.row = rows[0]
        attempts = control.trajectory(index)
        if attempts != self.attempts:
            self._show(attempts, scroll_home=False)
        else:
            self._show_title()
        if self.row.state in FINISHED and self._follow is not None:
            self._follow.stop()

    def _show(self, attempts: list[dict[str, Any]], *, scroll_home: bool) -> None:
        self.attempts = attempts
        self._show_title()
        # the run gives the attempts that have ended: the row counts the one under way too
        under_way = self.row.state == "in_flight" and len(attempts) < self.row.attempts
        note = f"Attempt {len(attempts) + 1} is under way: it shows here once it has ended." if under_way else ""
        if self.row.state == "waiting":
            note = f"Attempt {len(attempts) + 1} is waiting for {self.row.waiting_for}: it is not sent yet."
        if self.row.state == "queued":
            empty = QUEUED
        else:
            # a request that has started has attempts: none means they could not be read (the run said why)
            empty = note or "The attempts of this request could not be read."
        self.query_one(TrajectoryView).show_attempts(
            attempts, self.context.tz, scroll_home=scroll_home, empty=empty, after=note
        )

    def _show_title(self) -> None:
        row = self.row
        self.query_one(LivePanel).set_content(
            Content.assemble(
                (f"Request #{row.index}", "bold"),
                f"  id {row.id}  ·  {row.state.replace('_', ' ')}  ·  ",
                plural(max(row.attempts, len(self.attempts)), "attempt"),
            )
        )

    def action_copy_answer(self) -> None:
        if self.query_one(TrajectoryView).copy_answer() is None:
            self.notify(f"request #{self.row.index} has no answer to copy", severity="warning")
        else:
            self.notify(f"copied the answer of request #{self.row.index} to the clipboard")

    def action_copy(self) -> None:
        self.query_one(TrajectoryView).copy_all()
        self.notify(f"copied the attempts of request #{self.row.index} to the clipboard")

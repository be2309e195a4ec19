"""One request's whole trajectory."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer

from ...jobs.view import RequestRow
from ..context import DashboardContext
from ..formatting import plural
from ..widgets.panel import LivePanel
from ..widgets.trajectory import TrajectoryView

BACK = Binding("escape", "app.pop_screen", "back", id="back", tooltip="back to the previous screen")
COPY = Binding("c", "copy", "copy JSON", id="copy", tooltip="copy the attempts, as JSON, to the clipboard")


class TrajectoryScreen(Screen[None]):
    BINDINGS = [BACK, COPY]

    def __init__(self, context: DashboardContext, row: RequestRow) -> None:
        super().__init__()
        self.context = context
        self.row = row

    def compose(self) -> ComposeResult:
        yield LivePanel(id="trajectory-title")
        yield TrajectoryView(id="trajectory")
        yield Footer()

    def on_mount(self) -> None:
        row = self.row
        attempts = self.context.control.trajectory(row.index)
        self.query_one(LivePanel).set_content(Content.assemble(
            (f"Request #{row.index}", "bold"), f"  id {row.id}  ·  {row.state.replace('_', ' ')}  ·  ",
            plural(len(attempts), "attempt"),
        ))
        view = self.query_one(TrajectoryView)
        view.show_attempts(attempts, self.context.tz)
        view.focus()

    def action_copy(self) -> None:
        self.query_one(TrajectoryView).copy_all()
        self.notify(f"copied the attempts of request #{self.row.index} to the clipboard")

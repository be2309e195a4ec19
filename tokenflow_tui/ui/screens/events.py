"""The event pane: what happened to the run (pauses and their reasons, changes, saves, holds), newest last."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from ...run.contract import RunEvent
from ..context import DashboardContext
from ..formatting import MUTED, clock_time
from ..widgets.footer import KeyFooter
from ..widgets.panel import LivePanel
from .trajectory import BACK

_KIND_STYLES = {"pause": "bold $warning", "stop": "bold $error", "hold": "$warning", "done": "bold $success"}


def events_content(events: Sequence[RunEvent], tz: tzinfo | None) -> Content:
    """One line per event (a long one wraps under its text), earlier runs' first and marked as such."""
    if not events:
        return Content.styled("Nothing has happened yet.", MUTED)
    lines: list[Content] = []
    earlier = events[0].earlier
    if earlier:
        lines.append(Content.styled("earlier runs of this output", "bold " + MUTED))
    for event in events:
        if earlier and not event.earlier:
            earlier = False
            lines.append(Content.styled("this run", "bold " + MUTED))
        lines.append(
            Content.assemble(
                (clock_time(event.at, tz), MUTED),
                "  ",
                (event.text, MUTED if event.earlier else _KIND_STYLES.get(event.kind, "")),
            )
        )
    return Content("\n").join(lines)


class EventsScreen(Screen[None]):
    """The run's event log, followed live."""

    BINDINGS = [BACK]

    def __init__(self, context: DashboardContext) -> None:
        super().__init__()
        self.context = context
        self._shown: tuple[int, float | None, str] = (-1, None, "")

    def compose(self) -> ComposeResult:
        yield LivePanel(id="events-title")
        with VerticalScroll(id="events-scroll"):
            yield Static(id="events")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#events-title", LivePanel).set_content(
            Content.assemble(("Events", "bold"), ("  also in events.jsonl in the output directory", MUTED))
        )
        self.follow()
        self.set_interval(self.context.refresh_s, self.follow, name="follow")

    def follow(self) -> None:
        """Show the events again when there are new ones (or the last one was updated in place)."""
        events = self.context.control.snapshot().events
        last = events[-1] if events else None
        shown = (len(events), last.at if last else None, last.text if last else "")
        if shown == self._shown:
            return
        self._shown = shown
        self.query_one("#events", Static).update(events_content(events, self.context.tz))
        self.query_one("#events-scroll", VerticalScroll).scroll_end(animate=False)

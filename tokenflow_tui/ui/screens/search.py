"""The search prompt: a line at the bottom of the dashboard, as `/` in less or vim."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class SearchPrompt(ModalScreen[str | None]):
    """Asks what to search for; dismissed with the text (enter) or None (escape).

    Modal, so that the letters typed are text, not the dashboard's keys; the dashboard stays in view
    and goes on refreshing above it.
    """

    BINDINGS = [Binding("escape", "cancel", "cancel", id="cancel_search")]

    def __init__(self, query: str = "") -> None:
        super().__init__()
        self.query_text = query

    def compose(self) -> ComposeResult:
        with Horizontal(id="search-prompt"):
            yield Static("/", id="search-slash")
            yield Input(
                self.query_text,
                placeholder="id, or text of the params or the answer (enter searches, escape cancels)",
                id="search-input",
                select_on_focus=True,
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)

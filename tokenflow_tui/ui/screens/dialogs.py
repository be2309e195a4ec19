"""Modal dialogs: the quit confirmation and the list of keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from ..formatting import MUTED, plural
from ..widgets.footer import KeyFooter


class ConfirmQuitScreen(ModalScreen[bool | None]):
    """Asks before quitting while requests are in flight; dismissed with True to quit.

    The count follows the run; once nothing is in flight the question is moot and the dialog closes
    (dismissed with None), saying so.
    """

    BINDINGS = [
        Binding("y", "answer(True)", "save and quit", id="confirm_quit"),
        Binding("n,escape", "answer(False)", "cancel", id="cancel_quit"),
    ]

    def __init__(self, in_flight: Callable[[], int], refresh_s: float = 0.25) -> None:
        super().__init__()
        self._in_flight = in_flight
        self._refresh_s = refresh_s
        self.in_flight = in_flight()

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Static(self._text(), id="quit-text")
            with Horizontal(classes="buttons"):
                yield Button("Save and quit (y)", id="quit-yes", variant="error")
                yield Button("Cancel (n)", id="quit-no")
        yield KeyFooter()

    def _text(self) -> Content:
        return Content.assemble(
            (f"{plural(self.in_flight, 'request')} in flight.", "bold"),
            "\n\n",
            "Quitting pauses the job: no new request starts, those in flight finish, progress is "
            "saved, then TokenFlow exits. A rerun resumes where it stopped.",
        )

    def on_mount(self) -> None:
        self.query_one("#quit-yes").focus()
        self.set_interval(self._refresh_s, self.update_count)

    def update_count(self) -> None:
        """Show the run's count in flight now; close once it is zero."""
        if not self.is_active:
            return
        in_flight = self._in_flight()
        if in_flight == 0:
            self.notify("nothing is in flight any more: q saves and quits at once")
            self.dismiss(None)
        elif in_flight != self.in_flight:
            self.in_flight = in_flight
            self.query_one("#quit-text", Static).update(self._text())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit-yes")

    def action_answer(self, quit_: bool) -> None:
        self.dismiss(quit_)


class HelpScreen(ModalScreen[None]):
    """Every key of the dashboard, by the screen where it works."""

    BINDINGS = [Binding("escape,question_mark", "app.pop_screen", "close", id="close_help")]

    def __init__(self, sections: Sequence[tuple[str, Iterable[BindingType]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog") as dialog:
            # the list is taller than a small terminal: the way out stays in view on the border
            dialog.border_subtitle = "escape or ? closes"
            for title, bindings in self.sections:
                yield Static(Content.styled(title, "bold $accent"), classes="help-title")
                for given in bindings:
                    # a screen may give a binding as a (key, action[, description]) tuple, as Textual allows
                    binding = given if isinstance(given, Binding) else Binding(*given)
                    key = binding.key_display or self.app.get_key_display(binding)
                    # a key and its text side by side, so a text that wraps stays in its column
                    with Horizontal(classes="help-key"):
                        yield Static(Content.styled(key, "bold"), classes="key")
                        yield Static(binding.tooltip or binding.description, classes="what")
            yield Static(
                Content.styled("↑ ↓ page up/down home end move in lists; escape or ? closes this help", MUTED),
                classes="help-title",
            )
        yield KeyFooter()  # the keys that work here, not the dashboard's underneath

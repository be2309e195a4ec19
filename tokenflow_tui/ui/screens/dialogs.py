"""Modal dialogs: the quit confirmation and the list of keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from ..formatting import MUTED, plural


class ConfirmQuitScreen(ModalScreen[bool]):
    """Asks before quitting while requests are in flight; dismissed with True to quit."""

    BINDINGS = [
        Binding("y", "answer(True)", "save and quit", id="confirm_quit"),
        Binding("n,escape", "answer(False)", "cancel", id="cancel_quit"),
    ]

    def __init__(self, in_flight: int) -> None:
        super().__init__()
        self.in_flight = in_flight

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Static(
                Content.assemble(
                    (f"{plural(self.in_flight, 'request')} in flight.", "bold"),
                    "\n\n",
                    "Quitting pauses the job: no new request starts, those in flight finish, progress is "
                    "saved, then TokenFlow exits. A rerun resumes where it stopped.",
                )
            )
            with Horizontal(classes="buttons"):
                yield Button("Save and quit (y)", id="quit-yes", variant="error")
                yield Button("Cancel (n)", id="quit-no")

    def on_mount(self) -> None:
        self.query_one("#quit-yes").focus()

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

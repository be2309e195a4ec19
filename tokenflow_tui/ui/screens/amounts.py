"""A small dialog that asks for a few amounts (rate limits, budgets), prefilled, 0 meaning none."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ..formatting import MUTED, setting


@dataclass(frozen=True, slots=True)
class Amount:
    """One field of the dialog: what it is called, its value now, whether it takes whole numbers only,
    whether it is in US dollars."""

    name: str
    value: float
    whole: bool = False
    dollars: bool = False

    def show(self, value: float) -> str:
        """1,200 · $5.00 · none: a value of this field as notifications say it."""
        return setting(value, dollars=self.dollars)


def plain_number(value: float) -> str:
    """600, 0.25, 1500000: as a user would type it."""
    if value == int(value):
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def read_amount(amount: Amount, text: str) -> float | str:
    """The number typed for `amount`, or why it is not one, in a sentence; empty or "none" is 0."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    if cleaned.lower() in ("", "none"):
        return 0
    kind = "a whole number" if amount.whole else "a number"
    try:
        value = int(cleaned) if amount.whole else float(cleaned)
    except ValueError:
        return f"{amount.name}: “{text.strip()}” is not {kind} (0 means none)"
    if not 0 <= value < float("inf"):
        return f"{amount.name} must be {kind} of 0 or more (0 means none)"
    return value


Apply = Callable[..., str | None]  # the run's setter: None once applied, else why not


class AmountsDialog(ModalScreen["tuple[float, ...] | None"]):
    """Hands the amounts typed, in the order given, to `apply`; dismissed with them once it takes them,
    or with None when cancelled. What `apply` refuses (a sentence) is shown in the dialog, which stays
    open with what was typed, so one field the run refuses does not throw away the others."""

    BINDINGS = [
        Binding("escape", "cancel", "cancel", id="cancel_amounts"),
        # priority: the focus moves before the next key is read, so `5 tab 7 enter` typed at once fills both
        Binding("tab", "app.focus_next", "next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "previous field", show=False, priority=True),
    ]

    def __init__(self, title: str, amounts: list[Amount], note: str, apply: Apply) -> None:
        super().__init__()
        self.title_text = title
        self.amounts = amounts
        self.note = note
        self.apply_amounts = apply

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog amounts-dialog"):
            yield Static(Content.styled(self.title_text, "bold"))
            for number, amount in enumerate(self.amounts):
                with Horizontal(classes="amount"):
                    yield Label(amount.name)
                    yield Input(plain_number(amount.value), id=f"amount-{number}", select_on_focus=True)
            yield Static(id="amount-error")
            yield Static(Content.styled(self.note, MUTED), classes="amount-note")

    def on_mount(self) -> None:
        self.query_one("#amount-0", Input).focus()

    @on(Input.Submitted)
    def apply(self) -> None:
        values = []
        for number, amount in enumerate(self.amounts):
            value = read_amount(amount, self.query_one(f"#amount-{number}", Input).value)
            if isinstance(value, str):
                self._show_error(value)
                self.query_one(f"#amount-{number}", Input).focus()
                return
            values.append(value)
        refusal = self.apply_amounts(*values)
        if refusal:
            self._show_error(refusal)
            return
        self.dismiss(tuple(values))

    @on(Input.Changed)
    def _edited(self) -> None:
        # the error was about what was there before: it would now point at a fixed field
        self.query_one("#amount-error", Static).display = False

    def _show_error(self, message: str) -> None:
        error = self.query_one("#amount-error", Static)
        error.update(Content.styled(message, "bold $error"))
        error.display = True

    def action_cancel(self) -> None:
        self.dismiss(None)

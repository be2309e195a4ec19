"""The rules panel: for each [checks] check and [[retry.rules]] rule, what it caught, the requests it
rescued and what the rescues cost. Shown only for a job with checks or rules."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content

from ...run.contract import RuleLine, format_usd
from ..formatting import MUTED, fit
from .panel import LivePanel

_BORDER_ROWS = 2
_NUMBER = 9  # cells of a number column
_COLUMNS = ("caught", "rescued", "tokens")
_MAX_LINES = 8  # of checks and rules; the others are summed up in one line, so the table of requests keeps its rows


def rules_content(lines: Sequence[RuleLine], width: int) -> Content:
    """A heading, then a line per check and rule: its name and label, caught, rescued, tokens, cost."""
    with_cost = any(line.cost_usd is not None for line in lines)
    columns = (*_COLUMNS, "cost") if with_cost else _COLUMNS
    name_width = max(8, width - _NUMBER * len(columns))
    heading = [(fit("", name_width), MUTED)] + [(fit(title, _NUMBER, right=True), MUTED) for title in columns]
    rows = [Content.assemble(*heading)]
    hidden = len(lines) - _MAX_LINES + 1 if len(lines) > _MAX_LINES else 0
    for line in lines[: len(lines) - hidden] if hidden else lines:
        name = line.name if line.name.endswith(line.label) else f"{line.name}  {line.label}"
        numbers = [f"{line.caught:,}", f"{line.rescued:,}", f"{line.tokens:,}"]
        if with_cost:
            numbers.append(format_usd(line.cost_usd) if line.cost_usd is not None and line.rescued else "")
        style = "bold" if line.caught else "dim"
        rows.append(
            Content.assemble(
                (fit(name, name_width), "" if line.caught else MUTED),
                *((fit(number, _NUMBER, right=True), style) for number in numbers),
            )
        )
    if hidden:
        rows.append(Content.styled(f"… and {hidden} more: tokenflow report lists them all", MUTED))
    return Content("\n").join(rows)


class RulesPanel(LivePanel):
    """The rules lines of the snapshot; hidden (and sized to nothing) while there are none."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._height_lines = 0
        self._rules: Sequence[RuleLine] = ()

    def show_rules(self, lines: Sequence[RuleLine]) -> None:
        rows = min(len(lines), _MAX_LINES) + 1 if lines else 0
        if rows != self._height_lines:
            self._height_lines = rows
            self.display = bool(lines)
            self.styles.height = rows + _BORDER_ROWS
        self._rules = lines
        if lines:
            self.set_content(rules_content(lines, max(1, self.content_size.width)))

    def on_resize(self) -> None:
        # shown at last (or resized): the lines drawn while it had no width are drawn again at its own
        if self._rules:
            self.set_content(rules_content(self._rules, max(1, self.content_size.width)))

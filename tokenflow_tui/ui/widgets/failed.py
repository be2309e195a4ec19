"""The failed browser's lists: error kinds with their counts, and the requests of one kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.segment import Segment
from textual.content import Content
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets.option_list import Option

from ...run.contract import RunControl
from ..formatting import count, error_label, error_style, fit, one_line, short_status
from .line_list import LineList


def group_option(kind: str, n: int) -> Option:
    label = Content.assemble((fit(error_label(kind), 15), error_style(kind)), (f"{count(n):>9}", "bold"))
    return Option(label, id=kind)


class FailedList(LineList[tuple[int, str, str]]):
    """Failed requests by index with their last error; a trajectory is read only for a visible row."""

    def __init__(self, control: RunControl, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.control = control
        self.kind: str | None = None  # the error kind whose requests these are
        self.indexes: list[int] = []

    def show_indexes(self, indexes: list[int]) -> None:
        """A new list (another kind of error): from its first request."""
        self.indexes = indexes
        self.rewind()
        self.reload(len(indexes))
        if indexes:
            self.post_message(self.Highlighted(self, 0))

    def update_indexes(self, indexes: list[int]) -> None:
        """The same kind's list, changed (more failures, or some queued again): the cursor stays on
        its request if it is still there, else at its place, on the request that followed."""
        selected = self.selected_index()
        if indexes == self.indexes:
            return
        self.indexes = indexes
        self._window = ()  # every visible line is fetched again
        position = self.cursor
        if selected is not None and selected in indexes:
            position = indexes.index(selected)
        self.cursor = max(0, min(position, len(indexes) - 1))
        self.reload(len(indexes))
        self.refresh()
        if indexes:
            self.scroll_to_region(Region(0, self.cursor, 1, 1), animate=False, x_axis=False, immediate=True)
        if self.selected_index() != selected:
            self.post_message(self.Highlighted(self, self.cursor))

    def selected_index(self) -> int | None:
        return self.indexes[self.cursor] if self.indexes else None

    def fetch(self, start: int, stop: int) -> Sequence[tuple[int, str, str]]:
        """Index, status code and message of the last error of each request."""
        return [(index, *_last_error(self.control.trajectory(index))) for index in self.indexes[start:stop]]

    def empty_text(self) -> str:
        return "none left"

    def render_item(self, item: tuple[int, str, str], width: int, selected: bool) -> Strip:
        index, status, message = item
        style = self.line_style(selected)
        text = f"{fit(f'#{index}', 9)} {fit(status, 7)} {fit(message, width - 18)}"
        return Strip([Segment(text, style)]).crop_extend(0, width, style)


def _last_error(attempts: list[dict[str, Any]]) -> tuple[str, str]:
    error = (attempts[-1].get("error") or {}) if attempts else {}
    status = str(error.get("status_code") or short_status(str(error.get("kind", ""))))
    return status, one_line(str(error.get("message", "")))

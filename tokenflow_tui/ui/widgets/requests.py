"""The table of requests: a filter bar, a header and a line-API table that scales to millions of rows."""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.strip import Strip
from textual.widget import Widget

from ...run.contract import ROW_FILTERS, RequestRow, RunControl
from ..formatting import MUTED, count, fit, latency, one_line, short_status
from .line_list import LineList
from .panel import LivePanel

FILTER_LABELS = {"all": "all", "in_flight": "in flight", "retried": "retried", "failed": "failed"}
ROW_STATES = ("queued", "waiting", "in_flight", "retrying", "done", "failed")
# title, width, right-aligned; the preview takes what is left
COLUMNS = (
    ("#", 8, True),
    ("id", 14, False),
    ("state", 9, False),
    ("att", 3, True),
    ("status", 7, False),
    ("latency", 9, True),
)
_FIXED_WIDTH = sum(width + 1 for _, width, _ in COLUMNS)
_EMPTY = {
    "all": "no requests in the input",
    "in_flight": "no request in flight now",
    "retried": "no request retried so far",
    "failed": "no request has failed",
}


class FilterBar(LivePanel):
    def show_counts(self, counts: dict[str, int], active: str) -> None:
        parts = []
        for number, name in enumerate(ROW_FILTERS, 1):
            label = f" {number} {FILTER_LABELS[name]} {count(counts.get(name, 0))} "
            parts.append((label, "bold reverse $accent") if name == active else (label, MUTED))
        self.set_content(Content.assemble(*parts, ("   tab cycles", MUTED)))


class TableHeader(Widget):
    def render(self) -> Content:
        cells = [fit(title, width, right=right) for title, width, right in COLUMNS]
        cells.append(fit("preview", max(0, self.size.width - _FIXED_WIDTH)))
        return Content(" ".join(cells))


class RequestTable(LineList[RequestRow]):
    COMPONENT_CLASSES = LineList.COMPONENT_CLASSES | {f"request-table--{state}" for state in ROW_STATES}

    def __init__(self, control: RunControl, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.control = control
        self.row_filter = "all"

    def fetch(self, start: int, stop: int) -> Sequence[RequestRow]:
        return self.control.rows(self.row_filter, start, stop)

    def empty_text(self) -> str:
        return _EMPTY[self.row_filter]

    def render_item(self, row: RequestRow, width: int, selected: bool) -> Strip:
        base = self.line_style(selected)
        millis = row.latency_ms
        before = f"{fit(str(row.index), 8, right=True)} {fit(str(row.id), 14)} "
        after = " ".join(
            (
                "",
                fit(str(row.attempts), 3, right=True),
                fit(short_status(row.last_status), 7),
                fit(latency(None if millis is None else millis / 1000), 9, right=True),
                fit(
                    one_line(f"waiting for {row.waiting_for}" if row.waiting_for else row.preview), width - _FIXED_WIDTH
                ),
            )
        )
        segments = [
            Segment(before, base),
            Segment(fit(row.state.replace("_", " "), 9), self.line_style(selected, f"request-table--{row.state}")),
            Segment(after, base),
        ]
        if width < _FIXED_WIDTH:
            return Strip(segments).crop_extend(0, width, base)
        return Strip(segments, width)


class RequestsPanel(Vertical):
    """The filter bar, header and table; `refresh_rows` pulls the counts and the visible rows anew."""

    def __init__(self, control: RunControl, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.control = control

    def compose(self) -> ComposeResult:
        yield FilterBar(id="filter-bar")
        yield TableHeader(id="table-header")
        yield RequestTable(self.control, id="request-table")

    @property
    def table(self) -> RequestTable:
        return self.query_one(RequestTable)

    @property
    def row_filter(self) -> str:
        return self.table.row_filter

    def refresh_rows(self) -> None:
        counts = {name: self.control.row_count(name) for name in ROW_FILTERS}
        table = self.table
        self.query_one(FilterBar).show_counts(counts, table.row_filter)
        table.reload(counts[table.row_filter])

    def set_filter(self, row_filter: str) -> None:
        table = self.table
        if row_filter != table.row_filter:
            table.row_filter = row_filter
            table.rewind()
            self.refresh_rows()

    def cycle_filter(self) -> None:
        self.set_filter(ROW_FILTERS[(ROW_FILTERS.index(self.row_filter) + 1) % len(ROW_FILTERS)])

    def selected(self) -> RequestRow | None:
        return self.table.selected()

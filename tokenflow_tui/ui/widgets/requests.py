"""The table of requests: a filter bar, a header, a line-API table that scales to millions of rows, and
the line of the search under way."""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.strip import Strip
from textual.widget import Widget

from ...run.contract import ROW_FILTERS, SORT_KEYS, RequestRow, RunControl, SearchStatus, SortStatus
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
    """The column titles, and on the right the order of the rows when they are sorted."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.note = ""

    def show_note(self, note: str) -> None:
        if note != self.note:
            self.note = note
            self.refresh()

    def render(self) -> Content:
        cells = [fit(title, width, right=right) for title, width, right in COLUMNS]
        rest = max(0, self.size.width - _FIXED_WIDTH)
        note = self.note[: max(0, rest - len("preview") - 1)]
        cells.append(fit("preview", rest - len(note)) + note)
        return Content(" ".join(cells))


def sort_note(status: SortStatus, row_filter: str) -> str:
    """What the header says of the order: nothing for the input's, else the key, or the build's progress."""
    if status.key == "input":
        return ""
    if status.unavailable:
        return f"not sorted by {status.key}: {status.unavailable}"
    if row_filter == "in_flight":
        return f"not sorted by {status.key}: in flight"
    if not status.ready:
        percent = 100 * status.done // status.total if status.total else 0
        return f"sorting by {status.key}… {percent} %"
    return f"finished, by {status.key} ↓"


def search_content(status: SearchStatus) -> Content:
    """The line under the table while a search is on: its text, how far it has looked, what it found."""
    if status.unavailable:
        return Content.assemble((f"/{status.query}", "bold"), f"  {status.unavailable}")
    found = f"{count(status.matches)} match{'es' if status.matches != 1 else ''}"
    if status.done:
        where = f"{found} in {count(status.total)}"
    else:
        where = f"searching… {count(status.scanned)} of {count(status.total)} · {found} so far"
    keys = "   n next  N previous  / new search" if status.matches else "   / new search"
    return Content.assemble((f"/{status.query}", "bold"), f"  {where}", (keys, MUTED))


class RequestTable(LineList[RequestRow]):
    COMPONENT_CLASSES = (
        LineList.COMPONENT_CLASSES | {f"request-table--{state}" for state in ROW_STATES} | {"request-table--match"}
    )

    def __init__(self, control: RunControl, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.control = control
        self.row_filter = "all"
        self.sort = "input"

    def fetch(self, start: int, stop: int) -> Sequence[RequestRow]:
        return self.control.rows(self.row_filter, start, stop, sort=self.sort)

    def empty_text(self) -> str:
        return _EMPTY[self.row_filter]

    def render_item(self, row: RequestRow, width: int, selected: bool) -> Strip:
        base = self.line_style(selected)
        millis = row.latency_ms
        number = fit(str(row.index), 8, right=True)
        ident = fit(str(row.id), 14)
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
        # a match of the search shows in its number and id
        marked = self.line_style(selected, "request-table--match") if row.matched else base
        segments = [
            Segment(number, marked),
            Segment(" ", base),
            Segment(ident, marked),
            Segment(" ", base),
            Segment(fit(row.state.replace("_", " "), 9), self.line_style(selected, f"request-table--{row.state}")),
            Segment(after, base),
        ]
        if width < _FIXED_WIDTH:
            return Strip(segments).crop_extend(0, width, base)
        return Strip(segments, width)


class RequestsPanel(Vertical):
    """The filter bar, header, table and search line; `refresh_rows` pulls the counts and the visible rows anew.

    Searching and sorting are the run's work (it may hold a million requests): the panel asks for a
    search or an order and shows how far it has got on every refresh.
    """

    def __init__(self, control: RunControl, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.control = control
        self.search = SearchStatus()
        self._jump_pending = False  # a new search: the cursor goes to its first match once there is one

    def compose(self) -> ComposeResult:
        yield FilterBar(id="filter-bar")
        yield TableHeader(id="table-header")
        yield RequestTable(self.control, id="request-table")
        yield LivePanel(id="search-line")

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
        if table.sort != "input":
            self.query_one(TableHeader).show_note(sort_note(self.control.sort_status(table.sort), table.row_filter))
            table.reload(self.control.row_count(table.row_filter, sort=table.sort))
        else:
            table.reload(counts[table.row_filter])
        self._refresh_search()

    def _refresh_search(self) -> None:
        line = self.query_one("#search-line", LivePanel)
        if not self.search.query:
            line.display = False
            return
        if not self.search.done:
            self.search = self.control.search_status()
        line.display = True
        line.set_content(search_content(self.search))
        if self._jump_pending and self.search.matches:
            self._jump_pending = False
            self.find(1, from_position=self.table.cursor - 1)

    def start_search(self, query: str) -> None:
        """Search every request for `query` ("" ends the search); the cursor goes to the first match after it."""
        self.search = self.control.search(query)
        self._jump_pending = bool(query)
        self._refresh_search()

    def find(self, direction: int, from_position: int | None = None) -> str | None:
        """Move the cursor to the next match (1) or the previous one (-1); why not, in a sentence."""
        if not self.search.query:
            return "no search: / starts one"
        table = self.table
        start = table.cursor if from_position is None else from_position
        position = self.control.find(start, direction, table.row_filter, table.sort)
        if position is None:
            return "no match so far" if not self.search.done else f"no match for {self.search.query!r}"
        table.move_cursor(position)
        return None

    def cycle_sort(self) -> str:
        """The next order of the rows (input, latency, attempts, tokens); returns its key."""
        table = self.table
        table.sort = SORT_KEYS[(SORT_KEYS.index(table.sort) + 1) % len(SORT_KEYS)]
        table.rewind()
        if table.sort == "input":
            self.query_one(TableHeader).show_note("")
        self.refresh_rows()
        return table.sort

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

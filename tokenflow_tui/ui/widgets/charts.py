"""Throughput and errors over time, one column per second, from the snapshot's history."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.content import Content
from textual.widget import Widget

from ...run.contract import ERROR_KINDS, ChartPoint
from ..formatting import MUTED, compact, error_label, error_style, fit
from ..plot import bar_rows, nice_ceiling, per_second, sparkline

_GUTTER = 6  # y-axis labels of the throughput chart
_LABEL = 14  # error kind names
_TOTAL = 7  # errors of a kind in the window


class HistoryChart(Widget):
    """A chart of the history; repainted only when a new second arrives."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history: Sequence[ChartPoint] = ()

    def show_history(self, history: Sequence[ChartPoint]) -> None:
        if _history_key(history) != _history_key(self.history):
            self.history = history
            self.refresh()


def _history_key(history: Sequence[ChartPoint]) -> tuple[int, ChartPoint | None]:
    return len(history), (history[-1] if history else None)


class ThroughputChart(HistoryChart):
    """Finished requests per second as bars, with a y axis."""

    def render(self) -> Content:
        width = max(0, self.size.width - _GUTTER)
        height = max(1, self.size.height - 1)
        values = per_second(self.history, width, lambda p: p.finished)
        top = nice_ceiling(max(values, default=0))
        bars = bar_rows(values, height, top)
        lines = []
        for row, bar in enumerate(bars):
            label = compact(top) if row == 0 else ("0" if row == height - 1 else "")
            lines.append(Content.assemble((label.rjust(_GUTTER - 1) + "┤", MUTED), (bar, "$success")))
        span = f"-{width}s"
        axis = " " * (_GUTTER - 1) + "└" + span + "now".rjust(max(0, width - len(span)))
        lines.append(Content.styled(axis, MUTED))
        return Content("\n").join(lines)


class ErrorChart(HistoryChart):
    """One lane per error kind on a shared scale, so a 429 storm and a dead server look different."""

    @property
    def span(self) -> int:
        """Seconds shown: one column each."""
        return max(0, self.size.width - _LABEL - _TOTAL - 2)

    def on_resize(self) -> None:
        self.border_subtitle = f"last {self.span} s"

    def render(self) -> Content:
        width = self.span
        lanes = {kind: per_second(self.history, width, _errors_of(kind)) for kind in ERROR_KINDS}
        top = max((max(values, default=0) for values in lanes.values()), default=0) or 1
        lines = []
        for kind, values in list(lanes.items())[: self.size.height]:
            total = sum(values)
            style = error_style(kind) if total else "dim"
            lines.append(
                Content.assemble(
                    (fit(error_label(kind), _LABEL), style),
                    " ",
                    (sparkline(values, top), error_style(kind)),
                    " ",
                    (fit(f"{total:,}" if total else "·", _TOTAL, right=True), f"bold {style}" if total else style),
                )
            )
        return Content("\n").join(lines)


def _errors_of(kind: str) -> Callable[[ChartPoint], int]:
    return lambda point: point.errors.get(kind, 0)

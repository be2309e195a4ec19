"""The charts over time, one column per second, from the snapshot's history.

Every chart shows the same window (`window`, set by the screen to what the narrowest one can hold),
with a time axis of ticks and a y axis with its unit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.content import Content
from textual.widget import Widget

from ...run.contract import ERROR_KINDS, ChartPoint
from ..formatting import MUTED, compact, error_label, error_style, fit, latency
from ..plot import bar_rows, nice_ceiling, per_second, sparkline, time_axis

_GUTTER = 8  # y-axis labels ("20.0k/s") and the axis of the bar charts
_LABEL = 14  # error kind names
_RATE = 7  # a kind's errors per second over the last RATE_S seconds
RATE_S = 10


class HistoryChart(Widget):
    """A chart of the history; repainted only when a new second arrives or the window changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history: Sequence[ChartPoint] = ()
        self.window: int | None = None  # seconds shown, the same in every chart (None: all that fit)

    def show_history(self, history: Sequence[ChartPoint]) -> None:
        if _history_key(history) != _history_key(self.history):
            self.history = history
            self.refresh()

    def set_window(self, seconds: int) -> None:
        if seconds != self.window:
            self.window = seconds
            self.refresh()

    @property
    def plot_width(self) -> int:
        """Columns the chart can give to seconds."""
        return max(0, self.size.width - _GUTTER)

    def seconds(self) -> int:
        return min(self.plot_width, self.window) if self.window is not None else self.plot_width


def _history_key(history: Sequence[ChartPoint]) -> tuple[int, ChartPoint | None]:
    return len(history), (history[-1] if history else None)


def _y_axis(row: int, height: int, top: float, unit: Callable[[float], str]) -> str:
    """The y axis of a bar row: a tick and its value at the top, the middle and the bottom rows."""
    if row == 0:
        label = unit(top)
    elif height >= 4 and row == height // 2:
        label = unit(top * (height - row) / height)  # the value at that row's top edge
    elif row == height - 1:
        label = "0"
    else:
        return " " * (_GUTTER - 1) + "│"
    return label.rjust(_GUTTER - 1) + "┤"


class BarChart(HistoryChart):
    """One value per second as bars, with a y axis in its unit."""

    STYLE = "$success"

    def value(self, point: ChartPoint) -> float:
        raise NotImplementedError

    def unit(self, value: float) -> str:
        return f"{compact(value)}/s"

    def render(self) -> Content:
        width = self.seconds()
        pad = " " * (self.plot_width - width)
        height = max(1, self.size.height - 1)
        values = per_second(self.history, width, self.value)
        top = nice_ceiling(max(values, default=0))
        lines = [
            Content.assemble((_y_axis(row, height, top, self.unit), MUTED), pad, (bar, self.STYLE))
            for row, bar in enumerate(bar_rows(values, height, top))
        ]
        lines.append(Content.styled(" " * (_GUTTER - 1) + "└" + pad + time_axis(width), MUTED))
        return Content("\n").join(lines)


class ThroughputChart(BarChart):
    """Finished requests per second."""

    def value(self, point: ChartPoint) -> float:
        return point.finished


class TokensChart(BarChart):
    """Tokens per second (prompt and completion)."""

    STYLE = "$primary"

    def value(self, point: ChartPoint) -> float:
        return point.tokens


class LatencyChart(HistoryChart):
    """Each second's latency p95 as bars, its p50 as the darker part of each bar."""

    def render(self) -> Content:
        width = self.seconds()
        pad = " " * (self.plot_width - width)
        height = max(1, self.size.height - 1)
        p50 = per_second(self.history, width, lambda p: p.latency_p50_ms or 0)
        p95 = per_second(self.history, width, lambda p: p.latency_p95_ms or 0)
        top = nice_ceiling(max(p95, default=0))
        low, high = bar_rows(p50, height, top), bar_rows(p95, height, top)
        lines = []
        for row in range(height):
            cells = [(a, "$accent") if a != " " else (b, "$accent 40%") for a, b in zip(low[row], high[row])]
            label = _y_axis(row, height, top, lambda ms: latency(ms / 1000))
            lines.append(Content.assemble((label, MUTED), pad, *_runs(cells)))
        lines.append(Content.styled(" " * (_GUTTER - 1) + "└" + pad + time_axis(width), MUTED))
        return Content("\n").join(lines)


def _runs(cells: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Neighbouring cells of one style as one piece of text."""
    runs: list[tuple[str, str]] = []
    for text, style in cells:
        if runs and runs[-1][1] == style:
            runs[-1] = (runs[-1][0] + text, style)
        else:
            runs.append((text, style))
    return runs


class ErrorChart(HistoryChart):
    """One lane per error kind on a shared scale, so a 429 storm and a dead server look different.

    On the right, each kind's errors per second over the last RATE_S seconds (the title's unit).
    """

    @property
    def plot_width(self) -> int:
        return max(0, self.size.width - _LABEL - _RATE - 2)

    def render(self) -> Content:
        width = self.seconds()
        pad = " " * (self.plot_width - width)
        lanes = {kind: per_second(self.history, width, _errors_of(kind)) for kind in ERROR_KINDS}
        top = max((max(values, default=0) for values in lanes.values()), default=0) or 1
        lines = []
        for kind, values in list(lanes.items())[: max(0, self.size.height - 1)]:
            rate = sum(values[-RATE_S:]) / RATE_S
            style = error_style(kind) if any(values) else "dim"
            lines.append(
                Content.assemble(
                    (fit(error_label(kind), _LABEL), style),
                    " ",
                    pad,
                    (sparkline(values, top), error_style(kind)),
                    " ",
                    (fit(f"{compact(rate)}/s" if rate else "·", _RATE, right=True), f"bold {style}" if rate else style),
                )
            )
        lines.append(Content.styled(" " * (_LABEL + 1) + pad + time_axis(width), MUTED))
        return Content("\n").join(lines)


def _errors_of(kind: str) -> Callable[[ChartPoint], int]:
    return lambda point: point.errors.get(kind, 0)

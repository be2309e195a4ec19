"""Charts as lines of Unicode block characters: pure functions, so their output is deterministic."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..run.contract import ChartPoint

BLOCKS = " ▁▂▃▄▅▆▇█"


def per_second(history: Sequence[ChartPoint], width: int, value: Callable[[ChartPoint], float]) -> list[float]:
    """The last `width` seconds of `history` (oldest first), 0 for seconds without a point."""
    values: list[float] = [0] * max(width, 0)
    if not history or width <= 0:
        return values
    first = history[-1].t - width + 1
    for point in reversed(history):
        if point.t < first:
            break
        values[point.t - first] = value(point)
    return values


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 5 × 10^k that is at least `x`: a round top for an axis."""
    if x <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(x))
    for step in (1, 2, 5, 10):
        if step * magnitude >= x:
            return step * magnitude
    return 10 * magnitude


def bar_rows(values: Sequence[float], height: int, top: float) -> list[str]:
    """A bar chart `height` rows high, one column per value, `top` filling it; top row first.

    A value above zero always shows at least the lowest block, so a single error stays visible.
    """
    if height <= 0:
        return []
    full = height * 8
    eighths = [0 if v <= 0 else min(full, max(1, round(v / top * full))) for v in values]
    rows = []
    for row in range(height):
        floor = (height - 1 - row) * 8
        rows.append("".join(BLOCKS[min(8, max(0, e - floor))] for e in eighths))
    return rows


def sparkline(values: Sequence[float], top: float) -> str:
    """One row of `bar_rows`."""
    return bar_rows(values, 1, top)[0]


def time_axis(width: int) -> str:
    """A time axis `width` columns wide, one per second, ending now: ticks labelled -30s, -1m … with round steps."""
    if width <= 0:
        return ""
    axis = ["─"] * width
    # at most six ticks, on round seconds
    step = next((s for s in (10, 15, 30, 60, 120, 300, 600) if width / s <= 6), 600)
    for ago in range(step, width, step):
        label = f"-{ago // 60}m" if ago % 60 == 0 else f"-{ago}s"
        column = width - 1 - ago
        if column - len(label) < 0:
            break
        axis[column] = "┴"
        axis[column - len(label) : column] = label
    end = "now"
    if width >= len(end) + 1:
        axis[width - len(end) :] = end
    return "".join(axis)

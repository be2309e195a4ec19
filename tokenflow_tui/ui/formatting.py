"""How numbers, durations and times read on the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo

from rich.cells import cell_len, set_cell_size

from ..engine.error_kinds import (
    BAD_RESPONSE,
    CHECK_FAILED,
    CONNECTION,
    CUT_OFF,
    HANDLER_EXCEPTION,
    HANDLER_FAILED,
    HTTP_4XX,
    HTTP_5XX,
    HTTP_429,
    TIMEOUT,
    TOO_MANY_ATTEMPTS,
)
from ..run.contract import ERROR_KINDS, format_usd
from ..run.durations import DASH

MUTED = "$foreground-muted"  # labels and hints, quieter than the numbers

ERROR_LABELS = {
    HTTP_429: "429 rate limit",
    HTTP_5XX: "5xx server",
    HTTP_4XX: "4xx client",
    TIMEOUT: TIMEOUT,
    CONNECTION: CONNECTION,
    BAD_RESPONSE: "bad response",
    HANDLER_EXCEPTION: "handler error",
    CUT_OFF: "cut off",
    CHECK_FAILED: "check failed",
    TOO_MANY_ATTEMPTS: "too many attempts",
    HANDLER_FAILED: "handler failed",
}


def error_label(kind: str) -> str:
    return ERROR_LABELS.get(kind, kind)


# the status column is 7 cells: an attempt with no HTTP status shows its error kind, shortened
_SHORT_STATUS = {CONNECTION: "conn", BAD_RESPONSE: "bad", HANDLER_EXCEPTION: "error"}


def short_status(status: str) -> str:
    """'200', '429', 'timeout', 'conn' …: an attempt's status as the narrow columns show it."""
    return _SHORT_STATUS.get(status, status)


def count(n: int | None) -> str:
    """1,234,567"""
    return DASH if n is None else f"{n:,}"


def compact(x: float | None) -> str:
    """A rate or total in at most about five characters: 812, 52.1k, 1.2M."""
    if x is None:
        return DASH
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            value = x / factor
            return f"{value:.1f}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return f"{x:.1f}" if 0 < abs(x) < 10 else f"{x:.0f}"


def setting(value: float, *, dollars: bool = False) -> str:
    """A limit or budget as set: 3,000 · 0.50 · $5.00, and 'none' for 0."""
    if not value:
        return "none"
    if dollars:
        return format_usd(value)
    return f"{int(value):,}" if value == int(value) else f"{value:,.2f}"


def latency(seconds: float | None) -> str:
    """850 ms, 1.20 s, 2.5 min."""
    if seconds is None:
        return DASH
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def clock_time(timestamp: float | None, tz: tzinfo | None) -> str:
    """HH:MM:SS of a wall-clock timestamp in `tz` (None: the machine's local time)."""
    if timestamp is None:
        return DASH
    return datetime.fromtimestamp(timestamp, tz).strftime("%H:%M:%S")


def plural(n: int, word: str) -> str:
    """'1 request', '2 requests'."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def fit(text: str, width: int, *, right: bool = False) -> str:
    """`text` on exactly `width` cells: padded, or cut with an ellipsis."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def one_line(text: str) -> str:
    """Whitespace runs, newlines included, as single spaces."""
    return " ".join(text.split())


# one colour per error kind, the same in every chart and list, so a kind is recognised at a glance
ERROR_STYLES = {
    HTTP_429: "#e5c07b",
    HTTP_5XX: "#e06c75",
    HTTP_4XX: "#c678dd",
    TIMEOUT: "#d19a66",
    CONNECTION: "#56b6c2",
    BAD_RESPONSE: "#61afef",
    HANDLER_EXCEPTION: "#98c379",
    CUT_OFF: "#be5046",
    CHECK_FAILED: "#a9b1d6",
}


def error_style(kind: str) -> str:
    return ERROR_STYLES.get(kind, MUTED)


def ordered_kinds(by_kind: Mapping[str, object]) -> list[str]:
    """The kinds with a non-empty value, in the dashboard's order (ERROR_KINDS), unknown kinds last."""
    known = [kind for kind in ERROR_KINDS if by_kind.get(kind)]
    return known + sorted(kind for kind in by_kind if kind not in ERROR_KINDS and by_kind[kind])

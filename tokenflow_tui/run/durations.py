"""Durations as people read them, shared by the dashboard and the plain progress lines."""

from __future__ import annotations

from ..engine import StatsSnapshot

DASH = "—"  # a value not known (yet)


def duration(seconds: float | None) -> str:
    """0:05, 12:34, 1:02:03; a dash when unknown."""
    if seconds is None:
        return DASH
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_text(state: str, stats: StatsSnapshot, longest_in_flight_s: float | None = None) -> str:
    """The time left; in the tail (nothing queued) the requests left in flight and the longest wait."""
    # a rate measured while running says nothing of when a paused job will end
    if state != "running":
        return DASH
    if longest_in_flight_s is not None:
        return f"{stats.in_flight:,} in flight, longest {duration(longest_in_flight_s)}"
    left = stats.eta_s
    if left is not None and left < 1 and stats.total is not None and stats.finished < stats.total:
        return "<0:01"  # never 0:00 while requests remain
    return duration(left)

"""Durations as people read them, shared by the dashboard and the plain progress lines."""

from __future__ import annotations

DASH = "—"  # a value not known (yet)


def duration(seconds: float | None) -> str:
    """0:05, 12:34, 1:02:03; a dash when unknown."""
    if seconds is None:
        return DASH
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

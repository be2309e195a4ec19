"""The hidden requests-per-minute limit: a sliding window of admitted requests."""
from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Admits at most `limit` requests in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self._limit = limit
        self._window_s = window_s
        self._admitted: deque[float] = deque()

    def admit(self, now: float) -> float:
        """Count a request at `now` and return 0.0, or return the seconds until one would be admitted."""
        admitted = self._admitted
        while admitted and admitted[0] <= now - self._window_s:
            admitted.popleft()
        if len(admitted) < self._limit:
            admitted.append(now)
            return 0.0
        return admitted[0] + self._window_s - now

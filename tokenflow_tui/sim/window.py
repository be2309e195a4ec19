"""The hidden requests-per-minute limit: a sliding window of admitted requests."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Admits at most `limit` requests in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._admitted: deque[float] = deque()

    def admit(self, now: float) -> float:
        """Count a request at `now` and return 0.0, or return the seconds until one would be admitted."""
        admitted = self._forget(now)
        if len(admitted) < self.limit:
            admitted.append(now)
            return 0.0
        # after a cut of the limit more may be in the window than it allows now
        return admitted[len(admitted) - self.limit] + self.window_s - now

    def remaining(self, now: float) -> int:
        """Requests that would be admitted now."""
        return max(0, self.limit - len(self._forget(now)))

    def reset_s(self, now: float) -> float:
        """Seconds until the window is empty again (the x-ratelimit-reset-requests of OpenAI's API)."""
        admitted = self._forget(now)
        return admitted[-1] + self.window_s - now if admitted else 0.0

    def _forget(self, now: float) -> deque[float]:
        admitted = self._admitted
        while admitted and admitted[0] <= now - self.window_s:
            admitted.popleft()
        return admitted

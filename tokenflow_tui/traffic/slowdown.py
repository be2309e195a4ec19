"""The hold every worker observes after the server said "slow down" (a 429, or an allowance spent)."""

from __future__ import annotations

from typing import Protocol

MAX_HOLD_S = 60.0  # a server asking for more (an absurd Retry-After) holds the job no longer than this
JITTER_SHARE = 0.25  # held workers are let go over this share of the hold after it ends …
MAX_JITTER_S = 2.0  # … but over no more than this


class Rng(Protocol):
    def random(self) -> float: ...


class Slowdown:
    """Holds dispatch for every worker until a time, then lets the held ones go spread out.

    Releasing everyone at the same instant would send a burst into the limit that was just hit;
    each worker instead goes at a random moment within a quarter of the hold, or a round trip if
    that is longer (at most 2 s), after it ends. A later hold that ends later extends the current
    one; an earlier one changes nothing.
    """

    def __init__(self, rng: Rng) -> None:
        self._rng = rng
        self._until = 0.0
        self._spread = 0.0
        self.reason: str | None = None
        self.holds = 0  # how many times dispatch was held, for the dashboard

    def hold(self, seconds: float, now: float, reason: str, round_trip_s: float = 0.0) -> None:
        """Hold dispatch `seconds` from `now`; the held workers go over at least `round_trip_s` after.

        Spreading the release over a round trip (the latency of recent answers) lets the workers go
        at about the rate the answers came back, not all in the first millisecond of a short hold.
        """
        seconds = min(seconds, MAX_HOLD_S)
        if not seconds > 0 or now + seconds <= self._until:
            return
        if now >= self._until:
            self.holds += 1
        self._until = now + seconds
        self._spread = min(max(seconds * JITTER_SHARE, round_trip_s), MAX_JITTER_S)
        self.reason = reason

    def release_at(self, now: float) -> float | None:
        """When a worker arriving now may go: None at once, else a jittered moment after the hold."""
        if now >= self._until:
            return None
        return self._until + self._rng.random() * self._spread

    @property
    def until(self) -> float:
        """When the latest hold ends (ended, when in the past)."""
        return self._until

    def clear(self) -> None:
        """End the hold now: the user said to forget it."""
        self._until = 0.0
        self.reason = None

    def remaining_s(self, now: float) -> float:
        return max(0.0, self._until - now)

    def held(self, now: float) -> bool:
        return now < self._until

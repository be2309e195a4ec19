"""A token bucket shared by every worker: requests or tokens per minute, paced evenly."""

from __future__ import annotations

BURST_S = 0.1  # how much may go at once after a quiet spell: a tenth of a second's worth, so that
# no second (nor minute) ever sees more than a tenth of a second's worth above the rate


class TokenBucket:
    """Refills at `per_minute / 60` units a second, holding at most BURST_S's worth (at least one unit).

    `reserve` takes what a request needs at once, going into debt when the bucket holds less, and
    says how long the caller must wait for the debt to be paid: callers are served in the order
    they reserved, so a large request is never starved by small ones. `adjust` corrects a
    reservation once the real amount is known (a token estimate against the usage that came back).
    """

    def __init__(self, per_minute: float, now: float) -> None:
        self._level = 0.0
        self._at = now
        self.per_minute = 0.0
        self.set_rate(per_minute, now)
        self._level = self._capacity

    def set_rate(self, per_minute: float, now: float) -> None:
        """Change the rate (> 0); what is in the bucket stays, up to the new capacity."""
        if not per_minute > 0:
            raise ValueError(f"TokenBucket: the rate must be above 0, got {per_minute!r}")
        self._refill(now)
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._capacity = max(1.0, self._rate * BURST_S)
        self._level = min(self._level, self._capacity)

    def reserve(self, amount: float, now: float) -> float:
        """Take `amount` units; the seconds to wait before using them (0 when they were there)."""
        self._refill(now)
        self._level -= amount
        return 0.0 if self._level >= 0 else -self._level / self._rate

    def adjust(self, delta: float, now: float) -> None:
        """Take `delta` more units (or give back, when negative) for a reservation already made."""
        self._refill(now)
        self._level = min(self._level - delta, self._capacity)

    def level(self, now: float) -> float:
        """Units available now (negative: owed by callers still waiting)."""
        self._refill(now)
        return self._level

    def _refill(self, now: float) -> None:
        if now > self._at:
            if self.per_minute:
                self._level = min(self._capacity, self._level + (now - self._at) * self._rate)
            self._at = now

"""A token bucket shared by every worker: requests or tokens per minute, paced evenly."""

from __future__ import annotations

BURST_S = 0.1  # how much may go at once after a quiet spell: a tenth of a second's worth, so that
# no second (nor minute) ever sees more than a tenth of a second's worth above the rate


class TokenBucket:
    """Refills at `per_minute / 60` units a second, holding at most BURST_S's worth (at least one unit).

    `take` takes what a request needs at once, going into debt when the bucket holds less, and
    gives a ticket: `wait_s(ticket)` says how long the caller must still wait for its part of the
    debt to be paid, at the rate of now (a rate changed meanwhile applies to those already waiting).
    Callers are served in the order they took, so a large request is never starved by small ones.
    `adjust` corrects a reservation once the real amount is known (a token estimate against the
    usage that came back); what it gives back lets the waiting go sooner.
    """

    def __init__(self, per_minute: float, now: float) -> None:
        self._level = 0.0
        self._refilled = 0.0  # every unit that came into the bucket (refill and refunds), summed: tickets count on it
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
        return self.wait_s(self.take(amount, now), now)

    def take(self, amount: float, now: float) -> float:
        """Take `amount` units; the ticket to ask `wait_s` with."""
        self._refill(now)
        self._level -= amount
        return self._refilled + max(-self._level, 0.0)

    def wait_s(self, ticket: float, now: float) -> float:
        """Seconds until the units of `ticket` are there, at the rate of now (0 when they are)."""
        self._refill(now)
        return max(0.0, (ticket - self._refilled) / self._rate)

    def adjust(self, delta: float, now: float) -> None:
        """Take `delta` more units (or give back, when negative) for a reservation already made."""
        self._refill(now)
        level = min(self._level - delta, self._capacity)
        self._refilled += max(level - self._level, 0.0)
        self._level = level

    def level(self, now: float) -> float:
        """Units available now (negative: owed by callers still waiting)."""
        self._refill(now)
        return self._level

    def _refill(self, now: float) -> None:
        if now > self._at:
            if self.per_minute:
                level = min(self._capacity, self._level + (now - self._at) * self._rate)
                self._refilled += max(level - self._level, 0.0)
                self._level = level
            self._at = now

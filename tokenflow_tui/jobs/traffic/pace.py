"""The pace: when the server's limit spans a long time, dispatch for every worker follows the rate it accepted.

A 429 that asks for a wait of seconds or more means a limit counted over a long window, typically
requests per minute. Honouring the wait is not enough then: the burst that spent the allowance comes
back a window later, and so do the 429s. So from the first such 429 on, dispatch is paced a little
under the rate of good answers over the last minute (the run, when younger), grows by a tenth a
second while answers come (to three times that rate at most), and is cut again the same way, at
most once a second, whenever a 429 comes back.
A limit counted per second asks for milliseconds; the hold and the adaptive worker count suffice.
"""
from __future__ import annotations

from ...engine.stats import RateWindow

SPAN_S = 60.0  # limits are counted per minute at most: the accepted rate is judged over one
LONG_WAIT_S = 1.0  # a 429 asking for at least this long starts the pace
GROWTH = 0.1  # requests a second more per good answer: a tenth more every second at any rate
HEADROOM = 3.0  # the pace never grows beyond this many times the rate accepted over the last minute
CUT = 0.8
CUT_GAP_S = 1.0


class Pace:
    def __init__(self, now: float) -> None:
        self._born = now
        # good answers counted in 0.1 s buckets: a timestamp each would hold millions at speed
        self._answers = RateWindow()
        self.rate: float | None = None  # requests a second allowed; None while there is no pace
        self._cut_at = float("-inf")
        self._ceiling = 0.0  # HEADROOM × the accepted rate, worked out again once a second
        self._ceiling_at = float("-inf")

    def answered(self, now: float) -> None:
        self._answers.add(now)
        if self.rate is not None:
            # a window with room lets a burst through, and its 429s come back a window later
            if now - self._ceiling_at >= 1.0:
                self._ceiling = HEADROOM * self._answers.rate(now, SPAN_S, now - self._born)
                self._ceiling_at = now
            self.rate = min(self.rate + GROWTH, max(self._ceiling, self.rate))

    def overloaded(self, now: float, wait_s: float) -> bool:
        """The server refuses requests and asks for `wait_s`: set or cut the pace; whether it changed."""
        if (self.rate is None and wait_s < LONG_WAIT_S) or now - self._cut_at < CUT_GAP_S:
            return False
        accepted = self._answers.rate(now, SPAN_S, now - self._born)
        if accepted <= 0:
            return False  # nothing was accepted lately: no rate to follow; the hold does the waiting
        rate = accepted if self.rate is None else min(self.rate, accepted)
        self.rate = max(rate * CUT, 1 / SPAN_S)  # never nothing: one a minute sees the limit lift
        self._cut_at = now
        return True

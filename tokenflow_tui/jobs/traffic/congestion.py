"""Whether the server is overloaded now, or only answered one request badly.

A 429, a 503 or a timeout now and then is the server's bad luck with one request: that request
waits and retries, and the others go on. Several among the last few answers mean a limit is being
hit: then dispatch holds for every worker (429s) and the adaptive controller cuts back.
"""
from __future__ import annotations

from collections import deque

WINDOW = 8  # the last this many answers are judged …
TRIGGER = 4  # … and this many signals among them mean overload: a limit being hit gets there within
# a few answers, while a 4 % share of random faults does about once in 500 (binomial tail)


class Congestion:
    def __init__(self) -> None:
        self._recent: deque[bool] = deque(maxlen=WINDOW)
        self._signals = 0

    def note(self, overload: bool) -> bool:
        """One more answer (`overload`: the signal watched for); whether the server is overloaded now."""
        recent = self._recent
        if len(recent) == WINDOW and recent[0]:
            self._signals -= 1
        recent.append(overload)
        if overload:
            self._signals += 1
        return overload and self._signals >= TRIGGER

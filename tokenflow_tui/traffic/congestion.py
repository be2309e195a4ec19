"""Whether the server is overloaded now, or only answered some requests badly at random.

A 429, a 503 or a timeout now and then is the server's bad luck with one request: that request
waits and retries, and the others go on. Several among the last few answers mean a limit is being
hit: then dispatch holds for every worker (429s) and the adaptive controller cuts back.

"Several" is judged against the background: the share of signals the server gives while it is
not overloaded. A server that refuses 5 % of requests at random, however fast or slow they come,
is not a rate limit: four such refusals among eight answers happen about once in 2,000 answers,
so with that background it takes more (six of eight, a chance of under one in a million). A server
with no such background (a real limit, sent under it) needs only the usual four, once its answers
showed that (five before).

"The last few" are the latest by the moment given with each answer. For 429s that is when the
request was sent: a server that just hit its limit refuses new requests at once while the good
answers of the requests it took before keep coming back for a round trip; counted by arrival,
those would hide the refusals, and every worker would go on sending into the limit meanwhile.
"""

from __future__ import annotations

import math
from bisect import insort
from functools import lru_cache
from typing import Any

WINDOW = 8  # the last this many answers are judged …
TRIGGER = 4  # … and at least this many signals among them mean overload (fewer when asked for)
CHANCE = 1e-6  # … and only as many as random signals at the background share give by this chance at most
BACKGROUND_WEIGHT = 1 / 200  # of the newest answer, in the running average that is the background
BACKGROUND_START = 0.02  # before the server said much: a few answers say little, and 4 of the first 8
# refused at random by a server that refuses 5 % must not hold the job (5 of 8 are needed at 2 %)


class Congestion:
    def __init__(self) -> None:
        # [moment, signal, counts for the background] of the latest answers, oldest first
        self._recent: list[list[Any]] = []
        self._signals = 0
        self.background = BACKGROUND_START  # the share of answers that are signals while the server is not overloaded

    def note(self, overload: bool, at: float, *, least: int = TRIGGER, background: bool = True) -> bool:
        """One more answer (`overload`: the signal watched for) of moment `at`; whether the server is overloaded now.

        Overload takes `least` signals among the last WINDOW answers, and more when the background
        would give that many at random. An answer counts for the background once it leaves the
        window without having been part of an overload, unless `background` is false (a request
        sent faster than the server was seen to take: its 429 is news of the rate, not of the
        server's luck). An answer older than the last WINDOW ones says nothing of now and is left out.
        """
        recent = self._recent
        if len(recent) == WINDOW and at < recent[0][0]:
            return False
        insort(recent, [at, overload, background])
        if overload:
            self._signals += 1
        if len(recent) > WINDOW:
            _, signal, counts = recent.pop(0)
            self._signals -= signal
            if counts:
                self.background += BACKGROUND_WEIGHT * (signal - self.background)
        if not (overload and self.overloaded(least)):
            return False
        for answer in recent:
            answer[2] = False  # part of an overload: not the server's luck
        return True

    def overloaded(self, least: int = TRIGGER) -> bool:
        """Whether the last WINDOW answers hold `least` signals, and more than the background gives at random."""
        return self._signals >= max(least, _random_signals(round(self.background, 3)))

    def forget_recent(self) -> None:
        """Judge from the next answers on; the background stays (it is what the server does at random)."""
        self._recent.clear()
        self._signals = 0


@lru_cache(maxsize=1024)
def _random_signals(share: float) -> int:
    """The fewest signals among WINDOW answers that random ones at `share` give by CHANCE at most (WINDOW at most)."""
    tail = 1.0
    for count in range(WINDOW + 1):
        if tail <= CHANCE:
            return max(count, 1)
        tail -= math.comb(WINDOW, count) * share**count * (1 - share) ** (WINDOW - count)
    return WINDOW

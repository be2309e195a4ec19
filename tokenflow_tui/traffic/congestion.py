"""Whether the server is overloaded now, or only answered one request badly.

A 429, a 503 or a timeout now and then is the server's bad luck with one request: that request
waits and retries, and the others go on. Several among the last few answers mean a limit is being
hit: then dispatch holds for every worker (429s) and the adaptive controller cuts back.

"The last few" are the latest by the moment given with each answer. For 429s that is when the
request was sent: a server that just hit its limit refuses new requests at once while the good
answers of the requests it took before keep coming back for a round trip; counted by arrival,
those would hide the refusals, and every worker would go on sending into the limit meanwhile.
"""

from __future__ import annotations

from bisect import insort

WINDOW = 8  # the last this many answers are judged …
TRIGGER = 4  # … and this many signals among them mean overload: a limit being hit gets there within
# a few answers, while a 4 % share of random faults does about once in 500 (binomial tail)


class Congestion:
    def __init__(self) -> None:
        self._recent: list[tuple[float, bool]] = []  # (moment, signal) of the latest answers, oldest first
        self._signals = 0

    def note(self, overload: bool, at: float) -> bool:
        """One more answer (`overload`: the signal watched for) of moment `at`; whether the server is overloaded now.

        An answer older than the last WINDOW ones says nothing of now and is left out.
        """
        recent = self._recent
        if len(recent) == WINDOW and at < recent[0][0]:
            return False
        insort(recent, (at, overload))
        if overload:
            self._signals += 1
        if len(recent) > WINDOW and recent.pop(0)[1]:
            self._signals -= 1
        return overload and self._signals >= TRIGGER

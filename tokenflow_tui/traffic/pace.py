"""The pace: when the server's limit spans a long time, dispatch for every worker follows the rate it allows.

A 429 that asks for a wait of seconds or more means a limit counted over a long window, typically
requests per minute (a sliding window: what was admitted in the last minute counts). Honouring the
wait is not enough then: the requests sent too fast stay counted for a whole window, so 429s come
back long after the burst that caused them. So from the first such 429 on, dispatch is paced:

- the limit is read from the server's answer: a wait of `w` seconds means the window is full and
  holds what was admitted in its last `60 - w` seconds, counted here as the good answers of that
  time; the limit is that many a minute. This holds early in a run (a burst that spent a minute's
  allowance in seconds asks to wait out the rest of the minute) and after a cut of the limit (the
  window holds more than it now allows, and the wait is long): the rate of the last minute would
  be several times too fast in both;
- the pace starts at `CUT` of that rate, climbs back to it, lingers there, then probes above it
  more and more quickly (CUBIC, on the rate), so a limit that was raised is found within a minute
  while a steady one is not overrun every few seconds; the curve stands still while nothing is
  answered (during a hold), and never goes beyond HEADROOM times the limit or the rate answered;
- each later overload (at most one a second) reads the limit again and restarts the curve;
- once the server took a probe above the pace — in a minute with no cut, more good answers than the
  limit read allows (LET_GO_SHARE of it), which no window of a minute at that limit would admit —
  the limit is not what was read (it was raised, or the 429s were not a limit): the pace lets go,
  until the next overload starts one again. (A minute since the cut: before it, the window may hold
  more than the limit, as after a cut of the limit, when the wait is for enough of it to age out.)

A limit counted per second asks for milliseconds; the hold and the adaptive worker count suffice.
"""

from __future__ import annotations

from collections import deque

SPAN_S = 60.0  # limits are counted per minute at most
LONG_WAIT_S = 1.0  # a 429 asking for at least this long starts the pace
CUT = 0.8  # the pace after a 429, as a share of the limit read then
PLATEAU_S = 10.0  # the curve is back at the limit this long after a cut, and lingers there
HEADROOM = 3.0  # the pace never grows beyond this many times the limit read, or the rate answered
CUT_GAP_S = 1.0
IDLE_S = 1.0  # a gap between answers longer than this is a hold: the curve waits
LET_GO_SHARE = 1.2  # good answers over SPAN_S at this many times the limit read end the pace
_GROWTH = (1 - CUT) / PLATEAU_S**3  # the cubic's constant, in shares of the limit per s³
_TICKS_PER_S = 10


class Pace:
    def __init__(self, now: float) -> None:
        # good answers of the last minute, counted in 0.1 s buckets: [tick, count], oldest first
        self._answers: deque[list[int]] = deque()
        self._answered = 0  # the counts in _answers, summed
        self.rate: float | None = None  # requests a second allowed; None while there is no pace
        self.limit = 0.0  # requests a second the server allowed when it last refused one
        self._cut_at = float("-inf")
        self._epoch = now  # when the curve started (the last cut), moved on by holds
        self._last_answer = now

    def answered(self, now: float) -> None:
        tick = int(now * _TICKS_PER_S)
        answers = self._answers
        new_tick = not answers or answers[-1][0] != tick
        if new_tick:
            answers.append([tick, 1])
            self._forget(tick)
        else:
            answers[-1][1] += 1
        self._answered += 1
        if self.rate is None:
            return
        if new_tick and now - self._cut_at >= SPAN_S and self._answered >= LET_GO_SHARE * self.limit * SPAN_S:
            self.forget()  # the probe above the pace was taken
            return
        if now - self._last_answer > IDLE_S:
            self._epoch += now - self._last_answer
        self._last_answer = now
        t = now - self._epoch
        curve = self.limit * (1 + _GROWTH * (t - PLATEAU_S) ** 3)
        self.rate = min(curve, HEADROOM * max(self.limit, self._answered / SPAN_S))

    def overloaded(self, now: float, wait_s: float) -> bool:
        """The server refuses requests and asks for `wait_s`: set or cut the pace; whether it changed."""
        if (self.rate is None and wait_s < LONG_WAIT_S) or now - self._cut_at < CUT_GAP_S:
            return False
        admitted = self._count(now, SPAN_S - wait_s)
        if admitted <= 0:
            return False  # nothing was accepted lately: no rate to follow; the hold does the waiting
        self.limit = admitted / SPAN_S
        self.rate = self.limit * CUT
        self._cut_at = self._epoch = self._last_answer = now
        return True

    def forget(self) -> None:
        """No pace and no limit read, until the next overload."""
        self.rate = None
        self.limit = 0.0
        self._cut_at = float("-inf")

    @property
    def probing(self) -> bool:
        """Whether the pace is above the limit read: a 429 now answers the probe, not the server's luck."""
        return self.rate is not None and self.rate > self.limit

    def _count(self, now: float, seconds: float) -> int:
        """Good answers of the last `seconds` (up to SPAN_S)."""
        tick = int(now * _TICKS_PER_S)
        self._forget(tick)
        first = tick - int(seconds * _TICKS_PER_S)
        count = self._answered
        for at, n in self._answers:
            if at >= first:
                break
            count -= n
        return count

    def _forget(self, tick: int) -> None:
        answers = self._answers
        oldest = tick - int(SPAN_S * _TICKS_PER_S)
        while answers and answers[0][0] <= oldest:
            self._answered -= answers.popleft()[1]

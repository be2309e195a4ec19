"""The adaptive worker count: CUBIC, as TCP uses it, on the number of requests in flight.

It grows while requests succeed and cuts back when the server says it is overloaded (429s, 503s or
timeouts that are more than an occasional one, as `congestion` judges). Before the first such loss
it grows by half every round trip (slow start); after a loss it drops to `BETA` of what the server
was seen to sustain, climbs back fast, lingers near that level, then probes above it slowly, so
most of the time is spent just under the provider's limit.
"""

from __future__ import annotations

from collections import deque

BETA = 0.7  # the share kept after a cut
C = 0.4  # CUBIC's growth constant, in workers / s³
SLOW_START_STEP = 0.5  # per success before the first loss: the target grows by half every round trip
CUT_GAP_S = 1.0  # at most one cut a second: one overload is usually reported by many requests
GOODPUT_WINDOW_S = 1.0  # what the server sustained is judged over this much recent time
IDLE_SHARE = 0.5  # with fewer than this share of the target in flight, the job is not testing the limit
IDLE_GAP_S = 1.0  # no answer for this long: dispatch was held (after a 429), and nobody tested the limit


class AdaptiveConcurrency:
    """The target number of requests in flight, between `low` and `high`.

    `success` and `loss` are told of each attempt that ended (`started` and `now` are monotonic
    seconds, `in_flight` counts the attempt itself); both return the new target when it changed.
    """

    def __init__(self, start: int, low: int, high: int, now: float) -> None:
        self.low = low
        self.high = high
        self.target = min(max(start, low), high)
        self.cuts = 0
        self._window = float(self.target)  # the target before rounding
        self._slow_start = True
        self._w_max = 0.0
        self._k = 0.0
        self._epoch = now  # when the curve started (the last cut), shifted by idle time
        self._last_cut = float("-inf")
        self._last_event = now
        self._born = now
        self._done: deque[tuple[float, float]] = deque()  # (end, latency) of recent successes
        self._busy_s = 0.0  # the latencies in _done, summed

    def reset(self, target: int, now: float) -> None:
        """Someone chose the target by hand: carry on from there, probing gently."""
        self.target = min(max(target, self.low), self.high)
        self._window = float(self.target)
        self._start_curve(self._window, now, from_top=True)

    def success(self, started: float, now: float, in_flight: int) -> int | None:
        self._note(started, now)
        busy = in_flight >= self.target * IDLE_SHARE
        if not busy or now - self._last_event > IDLE_GAP_S:
            # nobody is testing the limit (the input ran dry, or dispatch is held): the curve waits;
            # else the first answer after a long hold would set the target far past the limit
            self._epoch += now - self._last_event
        self._last_event = now
        if not busy:
            return None
        if self._slow_start:
            self._window += SLOW_START_STEP
        else:
            t = now - self._epoch
            self._window = C * (t - self._k) ** 3 + self._w_max
        return self._set(self._window)

    def loss(self, started: float, now: float) -> int | None:
        self._last_event = now
        # a request sent before the last cut reports the overload that cut already answered
        if started < self._last_cut or now - self._last_cut < CUT_GAP_S:
            return None
        self._last_cut = now
        self.cuts += 1
        self._slow_start = False
        sustained = self._sustained(now)
        w_max = min(self._window, sustained) if sustained > 0 else self._window
        self._start_curve(w_max, now, from_top=False)
        return self._set(self._window)

    def _start_curve(self, w_max: float, now: float, *, from_top: bool) -> None:
        self._slow_start = self._slow_start and from_top
        self._w_max = max(w_max, 1.0)
        self._epoch = now
        if from_top:
            self._k = 0.0
        else:
            self._window = self._w_max * BETA
            self._k = (self._w_max * (1 - BETA) / C) ** (1 / 3)

    def _sustained(self, now: float) -> float:
        """Requests in flight the server answered well, on average over the recent window (Little's law)."""
        self._forget(now)
        # early in a run the window is not full yet: average over the time there was
        span = min(GOODPUT_WINDOW_S, now - self._born)
        return self._busy_s / span if span > 0 else 0.0

    def _note(self, started: float, now: float) -> None:
        latency = max(now - started, 0.0)
        self._done.append((now, latency))
        self._busy_s += latency
        self._forget(now)

    def _forget(self, now: float) -> None:
        done = self._done
        while done and done[0][0] < now - GOODPUT_WINDOW_S:
            self._busy_s -= done.popleft()[1]

    def _set(self, window: float) -> int | None:
        self._window = min(max(window, float(self.low)), float(self.high))
        target = max(self.low, min(self.high, int(self._window)))
        if target == self.target:
            return None
        self.target = target
        return target

"""Running statistics: O(1) to record, cheap to snapshot many times a second."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

_TICKS_PER_S = 10  # rate windows are kept in 0.1 s buckets
_WINDOW_TICKS = 60 * _TICKS_PER_S
_LAT_STEPS_PER_OCTAVE = 8  # latency histogram resolution: about 9 % per bucket
_LAT_MIN_S = 1e-6
_LAT_BUCKETS = 40 * _LAT_STEPS_PER_OCTAVE  # 1 µs .. about 12 days
# where each bucket after the first begins: a binary search over them costs half of a log2 per sample
_LAT_BOUNDS = [_LAT_MIN_S * 2 ** (i / _LAT_STEPS_PER_OCTAVE) for i in range(1, _LAT_BUCKETS)]


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A point-in-time view of a task; `total` is None while the input length is unknown.

    Times and rates count running time only: `rate_10s` is over the last 10 s the task ran, so
    right after a pause it still says how fast the task goes (and `eta_s` with it).
    """

    state: str
    total: int | None
    done: int
    failed: int
    in_flight: int  # attempts being sent or answered
    queued: int
    attempts: int
    retries: int
    workers: int
    target_workers: int
    elapsed_s: float
    rate_1s: float
    rate_10s: float
    rate_60s: float
    rate_avg: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_p99_s: float | None
    waiting: int = 0  # requests whose next attempt is held back (a limit, a hold, the pace): not in flight

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the recent rate, or None when it cannot be told."""
        if self.total is None:
            return None
        left = self.total - self.finished
        if left <= 0:
            return 0.0
        rate = self.rate_10s or self.rate_avg
        return left / rate if rate > 0 else None


class RateWindow:
    """Counts of events in 0.1 s buckets over the last minute."""

    __slots__ = ("_buckets", "_tick")

    def __init__(self) -> None:
        self._buckets = [0] * _WINDOW_TICKS
        self._tick = -1

    def add(self, now: float, n: int = 1) -> None:
        tick = int(now * _TICKS_PER_S)
        if tick != self._tick:
            self._advance(tick)
        self._buckets[tick % _WINDOW_TICKS] += n

    def _advance(self, tick: int) -> None:
        if self._tick >= 0:
            gap = tick - self._tick
            if gap >= _WINDOW_TICKS:
                self._buckets = [0] * _WINDOW_TICKS
            else:
                for t in range(self._tick + 1, tick + 1):
                    self._buckets[t % _WINDOW_TICKS] = 0
        self._tick = tick

    def rate(self, now: float, window_s: float, active_s: float) -> float:
        """Events per second over the last `window_s` seconds (at most `active_s`, the time counted)."""
        tick = int(now * _TICKS_PER_S)
        if tick != self._tick:
            self._advance(tick)
        n_ticks = min(int(window_s * _TICKS_PER_S), _WINDOW_TICKS)
        count = sum(self._buckets[(tick - i) % _WINDOW_TICKS] for i in range(n_ticks))
        # the current bucket is only partly elapsed
        span = (n_ticks - 1) / _TICKS_PER_S + (now * _TICKS_PER_S - tick) / _TICKS_PER_S
        span = min(span, active_s)
        return count / span if span > 1e-9 else 0.0


class LatencyHistogram:
    """Log-scale histogram: percentiles within about 9 %, without keeping samples."""

    __slots__ = ("_counts", "count")

    def __init__(self) -> None:
        self._counts = [0] * _LAT_BUCKETS
        self.count = 0

    def add(self, seconds: float) -> None:
        self._counts[bisect_right(_LAT_BOUNDS, seconds)] += 1
        self.count += 1

    def percentile(self, p: float) -> float | None:
        if not self.count:
            return None
        rank = p / 100 * self.count
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank and n:
                # the bucket's geometric middle
                return _LAT_MIN_S * 2 ** ((index + 0.5) / _LAT_STEPS_PER_OCTAVE)
        return None

    def to_data(self) -> dict[str, int]:
        return {str(i): n for i, n in enumerate(self._counts) if n}

    @classmethod
    def from_data(cls, data: dict[str, int]) -> LatencyHistogram:
        hist = cls()
        for key, n in data.items():
            hist._counts[int(key)] = int(n)
            hist.count += int(n)
        return hist

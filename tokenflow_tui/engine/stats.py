"""Running statistics: O(1) to record, cheap to snapshot many times a second."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TICKS_PER_S = 10  # rate windows are kept in 0.1 s buckets
_WINDOW_TICKS = 60 * TICKS_PER_S
# latency histogram: buckets 1 % wide on a log scale, so a bucket's geometric middle is within 0.5 %
# of every sample in it; 1 µs .. about 11 days in 2,779 buckets
_LAT_RATIO = 1.01
_LAT_MIN_S = 1e-6
_LAT_MAX_S = 1e6
_LAT_PER_LOG = 1 / math.log(_LAT_RATIO)
_LAT_BUCKETS = int(math.log(_LAT_MAX_S / _LAT_MIN_S) * _LAT_PER_LOG) + 1
_LAT_FORMAT = f"log-{_LAT_RATIO}"  # saved with the counts: counts of another bucket layout are not read
LAT_BATCH = 1024  # samples `add` keeps before it puts them in their buckets


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A point-in-time view of a task; `total` is None while the input length is unknown.

    Times and rates count running time only: `rate_10s` is over the last 10 s the task ran, so
    right after a pause it still says how fast the task goes (and `eta_s`, over the last minute, with it).
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
        """Seconds left at the rate of the last minute of running time, or None when it cannot be told.

        A minute, not 10 s: at a few workers the finishes come in bursts, and a 10 s window made the
        ETA jump by hours within seconds.
        """
        if self.total is None:
            return None
        left = self.total - self.finished
        if left <= 0:
            return 0.0
        rate = self.rate_60s or self.rate_avg
        return left / rate if rate > 0 else None


class RateWindow:
    """Counts of events in 0.1 s buckets over the last minute."""

    __slots__ = ("_buckets", "_tick")

    def __init__(self) -> None:
        self._buckets = [0] * _WINDOW_TICKS
        self._tick = -1

    def add(self, now: float, n: int = 1) -> None:
        tick = int(now * TICKS_PER_S)
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
        tick = int(now * TICKS_PER_S)
        if tick != self._tick:
            self._advance(tick)
        n_ticks = min(int(window_s * TICKS_PER_S), _WINDOW_TICKS)
        count = sum(self._buckets[(tick - i) % _WINDOW_TICKS] for i in range(n_ticks))
        # the current bucket is only partly elapsed
        span = (n_ticks - 1) / TICKS_PER_S + (now * TICKS_PER_S - tick) / TICKS_PER_S
        span = min(span, active_s)
        return count / span if span > 1e-9 else 0.0


class LatencyHistogram:
    """Log-scale histogram: percentiles within 1 % of the exact nearest-rank value, without keeping samples.

    `add` only appends to a short list; the samples are put in their buckets in batches (a loop over
    many is a third of the cost of bucketing each one as it comes: it is every attempt's cost).
    """

    __slots__ = ("_counts", "_high", "_low", "_max_s", "_min_s", "_pending", "_count")

    def __init__(self) -> None:
        self._counts = [0] * _LAT_BUCKETS
        self._count = 0
        self._pending: list[float] = []  # samples not yet in their buckets
        self._low = _LAT_BUCKETS  # the lowest and highest bucket used: percentiles scan only between them
        self._high = -1
        # the exact extremes: a percentile is never outside them (ten samples of 50 ms give 50 ms)
        self._min_s = math.inf
        self._max_s = 0.0

    def add(self, seconds: float) -> None:
        pending = self._pending
        pending.append(seconds)
        if len(pending) >= LAT_BATCH:
            self.fold()

    def samples(self) -> list[float]:
        """The list `add` appends to: a hot loop may append to it itself, and call `fold()` often enough to keep it short."""
        return self._pending

    @property
    def count(self) -> int:
        return self._count + len(self._pending)

    def fold(self) -> None:
        """Put the pending samples in their buckets."""
        pending = self._pending
        if not pending:
            return
        low, high = min(pending), max(pending)
        first, last = self._index(low), self._index(high)
        # fewer buckets between the extremes than samples: a few outliers aside, latencies gather in a
        # few of them (64 no-op workers: 44 buckets a batch, 320 between the extremes)
        if last - first < len(pending):
            self._fold_sorted(pending)
        elif low > _LAT_MIN_S and high < _LAT_MAX_S:
            counts, log, per_log, least = self._counts, math.log, _LAT_PER_LOG, _LAT_MIN_S
            for seconds in pending:
                counts[int(log(seconds / least) * per_log)] += 1
        else:
            counts, index = self._counts, self._index
            for seconds in pending:
                counts[index(seconds)] += 1
        self._count += len(pending)
        self._low, self._high = min(self._low, first), max(self._high, last)
        self._min_s, self._max_s = min(self._min_s, low), max(self._max_s, high)
        pending.clear()  # in place: `samples()` handed it out

    @staticmethod
    def _index(seconds: float) -> int:
        if seconds <= _LAT_MIN_S:
            return 0
        return min(int(math.log(seconds / _LAT_MIN_S) * _LAT_PER_LOG), _LAT_BUCKETS - 1)

    def _fold_sorted(self, pending: list[float]) -> None:
        """Samples that fall in few buckets (the usual case: latencies gather), in one pass over them sorted.

        The samples of a bucket then lie side by side: each bucket costs one logarithm and one binary
        search, however many samples it gets.
        """
        pending.sort()
        counts, log, per_log, least, last = self._counts, math.log, _LAT_PER_LOG, _LAT_MIN_S, _LAT_BUCKETS - 1
        size = len(pending)
        start = 0
        while start < size:
            seconds = pending[start]
            if seconds <= least:
                index, end = 0, bisect_right(pending, least, start)
            else:
                index = int(log(seconds / least) * per_log)
                if index >= last:
                    index, end = last, size
                else:
                    end = bisect_left(pending, least * _LAT_RATIO ** (index + 1), start + 1)
                    # the edge worked out by a power and the bucket by a logarithm may disagree in the
                    # last digit: the logarithm decides, as for a sample alone
                    while end > start + 1 and int(log(pending[end - 1] / least) * per_log) != index:
                        end -= 1
            counts[index] += end - start
            start = end

    def add_all(self, seconds: Iterable[float]) -> None:
        for value in seconds:
            self.add(value)

    def percentile(self, p: float) -> float | None:
        """The nearest-rank percentile `p` (0–100), as the middle of its bucket; None with no samples."""
        return self.percentiles((p,))[0]

    def percentiles(self, points: Sequence[float]) -> tuple[float | None, ...]:
        """Several percentiles in one pass over the buckets; `points` in increasing order."""
        self.fold()
        if not self._count:
            return tuple(None for _ in points)
        ranks = [max(1, math.ceil(p / 100 * self._count - 1e-9)) for p in points]
        found: list[float | None] = []
        seen = 0
        counts, low, high = self._counts, self._min_s, self._max_s
        for index in range(self._low, self._high + 1):
            seen += counts[index]
            while len(found) < len(ranks) and seen >= ranks[len(found)]:
                found.append(min(max(_LAT_MIN_S * _LAT_RATIO ** (index + 0.5), low), high))
        while len(found) < len(ranks):
            found.append(high)
        return tuple(found)

    def merge(self, other: LatencyHistogram) -> None:
        """Add the samples of `other`."""
        self.fold()
        other.fold()
        for index in range(other._low, other._high + 1):
            if other._counts[index]:
                self._counts[index] += other._counts[index]
        self._count += other._count
        self._low = min(self._low, other._low)
        self._high = max(self._high, other._high)
        self._min_s = min(self._min_s, other._min_s)
        self._max_s = max(self._max_s, other._max_s)

    def to_data(self) -> dict[str, object]:
        """Plain data (for state.toml and checkpoints): the bucket layout and the used buckets' counts."""
        self.fold()
        counts = self._counts
        used = [i for i in range(self._low, self._high + 1) if counts[i]]
        data: dict[str, object] = {"format": _LAT_FORMAT, "buckets": used, "counts": [counts[i] for i in used]}
        if self._count:
            data["min_s"], data["max_s"] = self._min_s, self._max_s
        return data

    @classmethod
    def from_data(cls, data: object) -> LatencyHistogram:
        """The histogram `to_data` gave; empty for data of another layout (an older version's)."""
        hist = cls()
        if not isinstance(data, dict) or data.get("format") != _LAT_FORMAT:
            return hist
        for index, n in zip(data.get("buckets", []), data.get("counts", [])):
            index, n = int(index), int(n)
            if 0 <= index < _LAT_BUCKETS and n > 0:
                hist._counts[index] += n
                hist._count += n
                hist._low = min(hist._low, index)
                hist._high = max(hist._high, index)
        if hist._count:
            # older figures without the extremes: the edges of the buckets used
            hist._min_s = float(data.get("min_s", _LAT_MIN_S * _LAT_RATIO**hist._low))
            hist._max_s = float(data.get("max_s", _LAT_MIN_S * _LAT_RATIO ** (hist._high + 1)))
        return hist

"""Statistics of a job beyond the engine's: tokens, attempt errors by kind, time to first token, per-second history."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from ..engine.stats import LatencyHistogram
from ..store.figures import RecordFigures
from .contract import ChartPoint

HISTORY_SECONDS = 600


class RunStats:
    """Accumulates what the charts and counters need; O(1) per attempt."""

    def __init__(self, history_s: int = HISTORY_SECONDS) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.errors_by_kind: Counter[str] = Counter()
        self.failed_by_kind: Counter[str] = Counter()
        self.ttft = LatencyHistogram()  # of streamed attempts that brought text
        # the records' sums (attempts, requests retried, latency) as `tokenflow report` folds them
        self.figures = RecordFigures()
        self._history: deque[ChartPoint] = deque(maxlen=history_s)
        self._second = -1
        self._finished = 0
        self._tokens = 0
        self._errors: Counter[str] = Counter()
        self._latencies_ms: list[float] = []  # of the second still open

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def note_attempt(
        self,
        elapsed_s: float,
        usage: dict[str, Any] | None,
        error_kind: str | None,
        ttft_ms: float | None = None,
        streamed_tokens: int = 0,
    ) -> None:
        """An attempt ended `elapsed_s` seconds into the run (running time).

        `streamed_tokens` of it were already counted in the per-second history as they arrived
        (note_streamed); its usage, the true count, makes up the rest.
        """
        self._roll(int(elapsed_s))
        if usage:
            prompt = usage.get("prompt_tokens") or 0
            completion = usage.get("completion_tokens") or 0
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self._tokens += max(0, prompt + completion - streamed_tokens)
        if ttft_ms is not None:
            self.ttft.add(ttft_ms / 1000)
        if error_kind is not None:
            self.errors_by_kind[error_kind] += 1
            self._errors[error_kind] += 1

    def note_streamed(self, elapsed_s: float, tokens: int) -> None:
        """Tokens of a streamed answer arrived: the rate shows them now, not when the answer ends."""
        self._roll(int(elapsed_s))
        self._tokens += tokens

    def ttft_percentiles(self) -> tuple[float | None, float | None, float | None]:
        """p50, p95 and p99 of the time to first token, in seconds (None before any streamed text)."""
        ttft = self.ttft
        return ttft.percentile(50), ttft.percentile(95), ttft.percentile(99)

    def note_finished(self, elapsed_s: float, failed_kind: str | None, latencies_ms: Iterable[float] = ()) -> None:
        """A request finished; `latencies_ms` of its attempts, for the latency chart."""
        self._roll(int(elapsed_s))
        self._finished += 1
        self._latencies_ms.extend(latencies_ms)
        if failed_kind is not None:
            self.failed_by_kind[failed_kind] += 1

    def unfail(self, kind: str) -> None:
        """A failed request was queued again."""
        if self.failed_by_kind[kind] > 0:
            self.failed_by_kind[kind] -= 1

    def add_late(self, late: LateRecords) -> None:
        """What records written after the last save add to the charts and the attempt errors (after a kill)."""
        for second in sorted(late.seconds):
            finished, tokens, errors = late.seconds[second]
            self._roll(second)  # a second the saved history has already closed goes to the open one
            self._finished += finished
            self._tokens += tokens
            self._errors.update(errors)
        self.errors_by_kind.update(late.errors)

    def history(self, elapsed_s: float) -> list[ChartPoint]:
        """Complete seconds, oldest first, with empty seconds filled in."""
        self._roll(int(elapsed_s))
        return list(self._history)

    def tokens_rate(self, elapsed_s: float, window_s: int = 10) -> float:
        points = self.history(elapsed_s)[-window_s:]
        span = min(window_s, len(points))
        return sum(p.tokens for p in points) / span if span else 0.0

    def _roll(self, second: int) -> None:
        if second <= self._second:
            return
        if self._second >= 0:
            self._history.append(self._open_point())
            # seconds with nothing in them still belong on the chart
            for empty in range(self._second + 1, min(second, self._second + 1 + HISTORY_SECONDS)):
                self._history.append(ChartPoint(empty, 0, 0, {}))
        self._second = second
        self._finished = 0
        self._tokens = 0
        self._errors = Counter()
        self._latencies_ms = []

    def _open_point(self) -> ChartPoint:
        """The second still open, as a point."""
        p50, p95 = _nearest_rank(self._latencies_ms, (50, 95))
        return ChartPoint(self._second, self._finished, self._tokens, dict(self._errors), p50, p95)

    # ----- checkpoint ------------------------------------------------------------------------

    def to_data(self, figures: dict[str, Any] | None = None) -> dict[str, Any]:
        """Plain data for state.toml (no None: TOML has no null); the second still open is kept too.

        `figures`: the records' figures as taken before the results were flushed (they must not
        count a record the file may not hold yet); the current ones by default.
        """
        points = list(self._history)
        if self._second >= 0 and (self._finished or self._tokens or self._errors):
            points.append(self._open_point())
        return {
            "figures": figures if figures is not None else self.figures.to_data(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "errors_by_kind": dict(self.errors_by_kind),
            "failed_by_kind": {k: v for k, v in self.failed_by_kind.items() if v},
            "ttft": self.ttft.to_data(),
            "history": {
                "t": [p.t for p in points],
                "finished": [p.finished for p in points],
                "tokens": [p.tokens for p in points],
                "errors": [dict(p.errors) for p in points],
                # TOML has no null: -1 for a second without a timed attempt
                "p50_ms": [-1.0 if p.latency_p50_ms is None else p.latency_p50_ms for p in points],
                "p95_ms": [-1.0 if p.latency_p95_ms is None else p.latency_p95_ms for p in points],
            },
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RunStats:
        stats = cls()
        stats.figures = RecordFigures.from_data(data.get("figures")) or RecordFigures()
        stats.prompt_tokens = int(data.get("prompt_tokens", 0))
        stats.completion_tokens = int(data.get("completion_tokens", 0))
        stats.errors_by_kind.update(data.get("errors_by_kind", {}))
        stats.failed_by_kind.update(data.get("failed_by_kind", {}))
        stats.ttft = LatencyHistogram.from_data(data.get("ttft", {}))
        history = data.get("history", {})
        times = history.get("t", [])
        none = [-1.0] * len(times)  # a state saved before the latency chart
        for t, finished, tokens, errors, p50, p95 in zip(
            times,
            history.get("finished", []),
            history.get("tokens", []),
            history.get("errors", []),
            history.get("p50_ms", none),
            history.get("p95_ms", none),
        ):
            stats._history.append(
                ChartPoint(int(t), int(finished), int(tokens), dict(errors), _known(p50), _known(p95))
            )
        if stats._history:
            stats._second = stats._history[-1].t + 1
        return stats


def cost_rates(
    cost_usd: float | None, total_tokens: int, tokens_last_minute: float, finished: int, total: int
) -> tuple[float | None, float | None]:
    """(per minute, projected at the end) from the cost so far: at its price per token, and per finished request."""
    if cost_usd is None:
        return None, None
    per_minute = cost_usd / total_tokens * tokens_last_minute if total_tokens else 0.0
    projected = cost_usd / finished * total if finished else None
    return per_minute, projected


def _known(ms: float) -> float | None:
    return None if ms < 0 else float(ms)


def _nearest_rank(values: list[float], points: tuple[int, ...]) -> tuple[float | None, ...]:
    """Exact nearest-rank percentiles of one second's few latencies."""
    if not values:
        return tuple(None for _ in points)
    ordered = sorted(values)
    return tuple(ordered[max(0, math.ceil(p * len(ordered) / 100) - 1)] for p in points)


class LateRecords:
    """Records written after the last save, which a kill -9 kept out of state.toml's statistics.

    Only their attempts that ended after the save are new to the saved figures; each is placed at
    the running time it ended, reckoned from the save's (`elapsed_s` at wall-clock `saved_at`).
    """

    def __init__(self, saved_at: float, elapsed_s: float) -> None:
        self._saved_at = saved_at
        self._elapsed_s = elapsed_s
        self.seconds: dict[int, tuple[int, int, Counter[str]]] = {}  # second → finished, tokens, errors
        self.errors: Counter[str] = Counter()
        self.last_s = elapsed_s  # the running time the last of them ended at

    def add(self, record: dict[str, Any]) -> None:
        ended: float | None = None
        for attempt in record.get("attempts") or ():
            started, latency_ms = attempt.get("started_at"), attempt.get("latency_ms")
            if not isinstance(started, int | float) or not isinstance(latency_ms, int | float):
                continue
            ended = self._elapsed_s + started + latency_ms / 1000 - self._saved_at
            if ended <= self._elapsed_s:
                continue  # it ended before the save: the saved figures count it
            error = attempt.get("error")
            kind = error.get("kind") if type(error) is dict else None
            usage = attempt.get("usage")
            tokens = (
                (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0) if type(usage) is dict else 0
            )
            self._note(int(ended), 0, tokens, kind)
        if ended is not None and ended > self._elapsed_s:
            self._note(int(ended), 1, 0, None)
            self.last_s = max(self.last_s, ended)

    def _note(self, second: int, finished: int, tokens: int, kind: str | None) -> None:
        done, used, errors = self.seconds.get(second, (0, 0, Counter()))
        if kind is not None:
            errors[kind] += 1
            self.errors[kind] += 1
        self.seconds[second] = (done + finished, used + tokens, errors)

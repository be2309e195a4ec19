"""What a front end (dashboard or headless) sees of a running job and may ask of it.

The runner implements `RunControl`; the dashboard pulls `snapshot()` and the visible rows on a timer
and never receives a message per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..engine import StatsSnapshot

# error kinds of an attempt, in the order the dashboard lists them
ERROR_KINDS = ("http_429", "http_5xx", "http_4xx", "timeout", "connection", "bad_response", "handler_exception")
ROW_FILTERS = ("all", "in_flight", "retried", "failed")


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One second of the run (seconds of running time since the run's first start)."""

    t: int
    finished: int
    tokens: int
    errors: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrafficView:
    """Traffic control as it stands: rate limits, the slow-down after a 429, the adaptive target, budgets."""

    requests_per_minute: float = 0.0  # the job's limit now; 0 = none
    tokens_per_minute: int = 0
    held_s: float = 0.0  # dispatch is held for every worker for this much longer
    held_because: str | None = None  # why, in a sentence, while held
    holds: int = 0  # how many times dispatch was held in this run
    adaptive: bool = False  # [workers] adaptive: the target below is chosen by the controller
    target_workers: int | None = None
    workers_min: int | None = None
    workers_max: int | None = None
    cuts: int = 0  # times the controller cut the target back
    tokens_used: int = 0  # by the whole job, every run of its output
    max_total_tokens: int = 0  # the token allowance now (raised on each resume after it was spent); 0 = none
    cost_usd: float | None = None  # with prices in the job file
    max_cost_usd: float = 0.0  # the cost allowance now; 0 = none
    remaining_requests: int | None = None  # the server's x-ratelimit-remaining-requests, when it sends one
    remaining_tokens: int | None = None
    pace_per_minute: float = 0.0  # dispatch follows the rate the server accepted (after long 429 waits); 0 = none
    sent: int = 0  # attempts on the wire; the engine's in-flight count also has those held back here


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    job_name: str
    output_dir: str
    state: str  # running, pausing, paused, stopping, done
    reason: str | None  # why the job paused or stopped by itself, in a sentence
    stats: StatsSnapshot
    prompt_tokens: int
    completion_tokens: int
    tokens_per_s_now: float
    tokens_per_s_avg: float
    errors_by_kind: Mapping[str, int]  # failed attempts, by kind
    failed_by_kind: Mapping[str, int]  # failed requests, by the kind of their last error
    history: Sequence[ChartPoint]  # the last few minutes, oldest first
    saved_at: float | None  # wall-clock time of the last save
    traffic: TrafficView = field(default_factory=TrafficView)


@dataclass(frozen=True, slots=True)
class RequestRow:
    index: int  # input line, 0-based
    id: Any
    state: str  # queued, in_flight, retrying, done, failed
    attempts: int
    last_status: str  # "200", "429", "timeout", … or "" before any attempt
    latency_ms: float | None
    preview: str  # start of the answer or the error message


@dataclass(frozen=True, slots=True)
class SaveReport:
    results: int  # records in results.jsonl
    path: str
    saved_at: float


class RunControl(Protocol):
    async def run(self) -> int:
        """Run the job until every request is finished or the run is shut down; the exit code (§2.1)."""
        ...

    async def shutdown(self) -> int:
        """Pause softly, save and release the output; the exit code (0 all finished, 130 otherwise)."""
        ...

    def snapshot(self) -> RunSnapshot: ...

    def row_count(self, row_filter: str = "all") -> int: ...

    def rows(self, row_filter: str, start: int, stop: int) -> list[RequestRow]: ...

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        """The request's attempts as in results.jsonl (`params`, `result` or `error`, `started_at`, `latency_ms`)."""
        ...

    def failed_groups(self) -> dict[str, list[int]]:
        """Indexes of the failed requests by the error kind of their last attempt."""
        ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def stop_now(self) -> None: ...

    def set_workers(self, n: int) -> str | None:
        """Change the worker target; returns why not, in a sentence, when it cannot."""
        ...

    async def save(self) -> SaveReport: ...

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        """Change the rate limits live (0: none); returns why not, in a sentence, when it cannot."""
        ...

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        """Change the budgets live (0: none; counted from the start of the job); returns why not."""
        ...

    def retry(self, indexes: Sequence[int]) -> int:
        """Queue failed requests again; returns how many were queued."""
        ...

"""What a front end (dashboard or headless) sees of a running job and may ask of it.

The runner implements `RunControl`; the dashboard pulls `snapshot()` and the visible rows on a timer
and never receives a message per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ..engine import StatsSnapshot
from ..engine.error_kinds import ERROR_KINDS
from ..store.results_file import RESULTS_FILE
from ..traffic.budget import format_usd
from ..traffic.view import TrafficView

__all__ = [
    "ERROR_KINDS",
    "ROW_FILTERS",
    "ChartPoint",
    "RESULTS_FILE",
    "RequestRow",
    "RuleLine",
    "RunEvent",
    "RunControl",
    "RunSnapshot",
    "RunState",
    "SORT_KEYS",
    "SaveReport",
    "SearchStatus",
    "SortStatus",
    "TrafficView",
    "EndpointView",
    "format_usd",
]

ROW_FILTERS = ("all", "in_flight", "retried", "failed")
# orders of the table: the input's, or finished requests by a key, largest first (see RunControl.rows)
SORT_KEYS = ("input", "latency", "attempts", "tokens")
# the job's state: pausing and stopping are a soft and a hard stop under way
RunState = Literal["starting", "running", "pausing", "paused", "stopping", "done"]


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One second of the run (seconds of running time since the run's first start)."""

    t: int
    finished: int
    tokens: int
    errors: Mapping[str, int] = field(default_factory=dict)
    latency_p50_ms: float | None = None  # of the attempts of the requests finished in this second
    latency_p95_ms: float | None = None


@dataclass(frozen=True, slots=True)
class RunEvent:
    """Something that happened to the run: a pause and its reason, a change, a save, a hold, a resume."""

    at: float  # wall-clock time
    kind: str  # pause, resume, stop, workers, limits, budget, save, hold, open, done
    text: str  # a sentence, no secret in it
    earlier: bool = False  # from an earlier run of this output (read from events.jsonl)


@dataclass(frozen=True, slots=True)
class RuleLine:
    """What one [checks] check or [[retry.rules]] rule did over the whole job (as `tokenflow report` counts)."""

    name: str  # "check json_schema", "rule 1"
    label: str  # the check's name, or the rule's `when`
    caught: int  # attempts it caught
    rescued: int  # requests done after it caught one of their attempts
    tokens: int  # of the attempts after the first it caught, in the rescued requests
    cost_usd: float | None  # of those tokens, with prices set


@dataclass(frozen=True, slots=True)
class EndpointView:
    """One of [[endpoints]]: its counts over every run (from the records, as `report` reads them) and its state."""

    name: str
    state: str  # "sending", "held" (its traffic control holds its dispatch) or "paused"
    reason: str | None  # why it is held or paused, in a sentence
    weight: float
    attempts: int
    errors: int  # attempts that failed
    done: int  # requests whose final attempt it answered well
    rate_per_s: float  # attempts it ended per second lately
    requests_per_minute: float = 0.0  # its own limits; 0 = none
    tokens_per_minute: int = 0
    pace_per_minute: float = 0.0  # it follows the rate its server accepted; 0 = not paced


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    job_name: str
    output_dir: str
    state: RunState
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
    # time to first token of streamed attempts, in seconds; None without [endpoint] stream = true
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    ttft_p99_s: float | None = None
    # finished records saving could not write (a full disk): in memory while paused, given up once closed
    unsaved: int = 0

    @property
    def results_path(self) -> str:
        """The run's results.jsonl (of a run across shards: each shard's)."""
        return self.results_at or str(Path(self.output_dir) / RESULTS_FILE)

    retried: int = 0  # requests with two attempts or more (their last record's, or the unfinished ones')
    longest_in_flight_s: float | None = None  # in the tail (nothing queued): the oldest attempt in flight
    cost_usd: float | None = None  # with prices set: spent so far over the whole job
    cost_per_min_usd: float | None = None  # at the rate of the last minute
    cost_projected_usd: float | None = None  # at the end of the job, at the average cost per request
    events: Sequence[RunEvent] = ()  # the event log, oldest first (earlier runs' too)
    results_at: str = ""  # where the results are when not OUTPUT/results.jsonl (a run across shards)
    rules: Sequence[RuleLine] = ()  # each check, then each rule, of a job with [checks] or [[retry.rules]]
    endpoints: Sequence[EndpointView] = ()  # with [[endpoints]], in the job file's order


@dataclass(frozen=True, slots=True)
class RequestRow:
    index: int  # input line, 0-based
    id: Any
    state: str  # queued, waiting (held back by a limit, a hold, the pace), in_flight, retrying, done, failed
    attempts: int
    last_status: str  # "200", "429", "timeout", … or "" before any attempt
    latency_ms: float | None
    preview: str  # start of the answer or the error message
    waiting_for: str = ""  # while waiting: what for ("the rate limit", "the pace", …)
    matched: bool = False  # the search under way (or last done) found it


@dataclass(frozen=True, slots=True)
class SaveReport:
    results: int  # records in results.jsonl
    path: str
    saved_at: float


@dataclass(frozen=True, slots=True)
class SearchStatus:
    """How far the search for `query` has looked: `scanned` of `total` requests, `matches` found so far."""

    query: str = ""
    scanned: int = 0
    total: int = 0
    matches: int = 0
    done: bool = True
    unavailable: str = ""  # why this run cannot search, in a sentence (a run across shards)


@dataclass(frozen=True, slots=True)
class SortStatus:
    """Where the sorted order by `key` stands: `ready` once there is one to show (rebuilt now and then
    in the background while the run goes on), `done` of `total` steps of the build under way."""

    key: str = "input"
    ready: bool = True
    building: bool = False
    done: int = 0
    total: int = 0
    unavailable: str = ""  # why this run cannot sort, in a sentence (a run across shards)


class RunControl(Protocol):
    async def run(self) -> int:
        """Run the job until every request is finished or the run is shut down; the exit code (§2.1)."""
        ...

    async def shutdown(self) -> int:
        """Pause softly, save and release the output; the exit code (0 all finished, 130 otherwise)."""
        ...

    def snapshot(self) -> RunSnapshot: ...

    def row_count(self, row_filter: str = "all", sort: str = "input") -> int: ...

    def rows(self, row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        """Rows `start` to `stop` of the filter's list; with a sort key other than "input", its finished
        requests by that key, largest first (in input order until `sort_status(sort).ready`)."""
        ...

    def sort_status(self, sort: str) -> SortStatus: ...

    def search(self, query: str) -> SearchStatus:
        """Start searching every request (id, params, answer) for `query`, in the background; "" ends it."""
        ...

    def search_status(self) -> SearchStatus: ...

    def find(self, position: int, direction: int, row_filter: str = "all", sort: str = "input") -> int | None:
        """The position in that list of the next match after `position` (direction 1) or before it (-1),
        wrapping around; None while no match is found."""
        ...

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

    def reset_traffic(self) -> str | None:
        """Forget the pace, the holds and the limits read from the server (the job's own limits stay); why not."""
        ...

    def retry(self, indexes: Sequence[int]) -> int:
        """Queue failed requests again; returns how many were queued."""
        ...

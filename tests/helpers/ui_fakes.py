"""A scripted RunControl for the dashboard's tests: fixed numbers, rows computed from their index,
every call recorded, and `finish()` to make `run()` return."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot
from textual.worker import WorkerFailed

from tokenflow_tui.engine import StatsSnapshot
from tokenflow_tui.run.contract import (
    ChartPoint,
    EndpointView,
    RequestRow,
    RuleLine,
    RunEvent,
    RunSnapshot,
    SaveReport,
    SearchStatus,
    SortStatus,
    TrafficView,
)
from tokenflow_tui.ui import TokenFlowApp

WALL_START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
NOW = WALL_START + 754.0  # 22:25:54 UTC
SIZE = (120, 40)
# limits, a hold, adaptive workers, budgets and the server's allowance at once
# three endpoints: one sending under its own limit, one held after its 429s, one dead
ENDPOINTS = (
    EndpointView("primary", "sending", None, 3.0, 8_412, 12, 8_380, 41.5, 3_000.0, 450_000),
    EndpointView(
        "limited", "held", "the server answers 429 (too many requests)", 1.0, 2_210, 388, 1_790, 6.2, 0.0, 0, 360.0
    ),
    EndpointView(
        "dead",
        "paused",
        "the server at http://10.0.0.7:8000/v1 cannot be reached (20 attempts in a row over 5 s failed to connect: "
        "the connection failed: Connect call failed); check that it runs and the address, then resume",
        1.0,
        0,
        0,
        0,
        0.0,
    ),
)
ACTIVE_TRAFFIC = TrafficView(
    requests_per_minute=3_000,
    tokens_per_minute=450_000,
    held_s=2.4,
    held_because="the server answers 429 (too many requests)",
    holds=3,
    adaptive=True,
    target_workers=48,
    workers_min=8,
    workers_max=256,
    cuts=5,
    tokens_used=198_000,
    max_total_tokens=500_000,
    cost_usd=0.42,
    max_cost_usd=2.0,
    remaining_requests=120,
    remaining_tokens=81_000,
    pace_per_minute=2_450,
    sent=48,
)

# the failed requests' kinds, 429s the most common
_FAILED_KINDS = ("http_429", "http_429", "http_5xx", "timeout", "http_429", "connection", "bad_response")
_ERRORS = {
    "http_429": (429, "429", "Rate limit reached for gpt-4o-mini: retry after 2 s"),
    "http_5xx": (503, "503", "Service Unavailable: the model is overloaded"),
    "http_4xx": (400, "400", "Bad request: max_tokens is too large"),
    "timeout": (None, "timeout", "no answer within 120 s"),
    "connection": (None, "reset", "connection reset by peer"),
    "bad_response": (200, "200", "the body is not JSON"),
    "handler_exception": (None, "error", "KeyError: 'choices'"),
}


def scripted_history(seconds: int) -> list[ChartPoint]:
    """A ramp to a steady rate with a 429 storm, a 5xx burst and scattered other errors."""
    points = []
    for t in range(seconds):
        finished = min(t * 4, 60) + (t * 13) % 17
        errors = {}
        if 70 <= t < 90:
            errors["http_429"] = 20 + (t % 5) * 3
            finished //= 3
        if 100 <= t < 104:
            errors["http_5xx"] = 8
        if t % 11 == 0:
            errors["timeout"] = 1
        if t == 40:
            errors["connection"] = 3
        if t % 23 == 0:
            errors["bad_response"] = 1
        if t % 37 == 5:
            errors["http_4xx"] = 1
        if t == 115:
            errors["handler_exception"] = 2
        # latency climbs during the 429 storm (queued behind the slow-down), then settles
        p50 = 180.0 + (t % 7) * 6 + (150.0 if 70 <= t < 90 else 0.0)
        points.append(
            ChartPoint(
                t=t,
                finished=finished,
                tokens=finished * 165,
                errors=errors,
                latency_p50_ms=p50 if finished else None,
                latency_p95_ms=p50 * 2.2 if finished else None,
            )
        )
    return points


class FixedLag:
    """A lag probe that always reports the same p99, so snapshots are stable."""

    def __init__(self, p99_ms: float | None = 3.0) -> None:
        self.value = p99_ms
        self.started = self.stopped = 0

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def p99_ms(self) -> float | None:
        return self.value


class ScriptedRun:
    """Requests below `finished` are done (every 50th, from 7, failed), the next `in_flight` are in
    flight (every 8th retrying), the rest queued."""

    def __init__(
        self,
        *,
        total: int = 2_000,
        finished: int = 1_200,
        in_flight: int = 64,
        state: str = "running",
        reason: str | None = None,
        workers: int = 64,
        history_s: int = 120,
    ) -> None:
        self.total, self.finished, self.in_flight = total, finished, in_flight
        self.state, self.reason = state, reason
        self.workers = self.target_workers = workers
        self.history = scripted_history(history_s)
        self.saved_at: float | None = NOW - 42
        self.events: tuple[RunEvent, ...] = ()
        self.cost: tuple[float, float, float] | None = None  # so far, per minute, projected (prices set)
        self.run_code, self.shutdown_code = 0, 130
        self.calls: list[tuple[Any, ...]] = []
        self.rows_asked: list[tuple[str, int, int]] = []
        self.snapshots = 0
        self._requeued: set[int] = set()
        self._lists: dict[str, list[int]] = {}
        self._finished_event = asyncio.Event()
        self.save_gate = asyncio.Event()  # clear it to hold save() until it is set again
        self.save_gate.set()
        self.pause_gate = asyncio.Event()  # clear it to hold pause() in "pausing" until it is set again
        self.pause_gate.set()
        self.shutdown_gate = asyncio.Event()  # clear it to hold shutdown() in "pausing"
        self.shutdown_gate.set()
        self.run_error: Exception | None = None
        self.traffic = TrafficView()
        self.endpoints: tuple[EndpointView, ...] = ()  # with [[endpoints]]
        self.ttft_s: tuple[float, float, float] | None = None  # p50, p95, p99 of a streamed run
        self.query = ""  # the search: see search()
        self.search_done = True  # False: the search has looked at a quarter of the requests, found nothing yet
        self.sort_ready = True  # False: sorts stay "being built"
        self.prices = False  # a cost budget is refused without prices, as the runner does
        self.rules: tuple[RuleLine, ...] = ()  # the rules panel's lines (a job with [checks] or [[retry.rules]])

    # the script

    def finish(self, code: int = 0) -> None:
        """Every request has a final record: `run()` returns `code`."""
        self.finished, self.in_flight, self.state, self.run_code = self.total, 0, "done", code
        self._requeued.clear()
        self._lists.clear()
        self._finished_event.set()

    def advance(self, n: int) -> None:
        """`n` more requests finish and as many start."""
        self.finished += n
        self._lists.clear()

    def crash(self, error: Exception) -> None:
        """`run()` raises `error`."""
        self.run_error = error
        self._finished_event.set()

    # what a request looks like

    def row_state(self, i: int) -> str:
        if i in self._requeued:
            return "queued"
        if i < self.finished:
            return "failed" if i % 50 == 7 else "done"
        if i < self.finished + self.in_flight:
            return "retrying" if i % 8 == 0 else "in_flight"
        return "queued"

    def attempts(self, i: int) -> int:
        state = self.row_state(i)
        if state == "failed" or (state == "queued" and i in self._requeued):
            return 3 + i % 2
        if state == "done":
            return 2 if i % 9 == 0 else 1
        return {"retrying": 2, "in_flight": 1}.get(state, 0)

    def kind(self, i: int) -> str:
        return _FAILED_KINDS[(i // 50) % len(_FAILED_KINDS)]

    def row(self, i: int) -> RequestRow:
        state, attempts = self.row_state(i), self.attempts(i)
        status, latency, preview = "", None, ""
        if state == "done":
            status, latency = "200", 150.0 + (i * 37) % 900
            preview = f"Document {i} argues that small caches beat large ones when reads are local."
        elif state == "failed":
            _, status, preview = _ERRORS[self.kind(i)]
            latency = 1000.0 + i % 500
        elif attempts > 1:
            status, preview = "429", "retrying after a rate limit"
        return RequestRow(
            index=i,
            id=f"doc-{i:06d}",
            state=state,
            attempts=attempts,
            last_status=status,
            latency_ms=latency,
            preview=preview,
        )

    def _filtered(self, row_filter: str) -> Sequence[int]:
        if row_filter == "all":
            return range(self.total)
        if row_filter == "in_flight":
            return range(self.finished, min(self.total, self.finished + self.in_flight))
        if row_filter not in self._lists:
            failed = [i for i in range(7, self.finished, 50) if i not in self._requeued]
            if row_filter == "failed":
                self._lists[row_filter] = failed
            else:
                retrying = range(self.finished + (-self.finished % 8), self.finished + self.in_flight, 8)
                self._lists[row_filter] = sorted({*range(0, self.finished, 9), *failed, *retrying})
        return self._lists[row_filter]

    # RunControl

    async def run(self) -> int:
        self.calls.append(("run",))
        self._finished_event.clear()
        await self._finished_event.wait()
        if self.run_error is not None:
            raise self.run_error
        return self.run_code

    async def shutdown(self) -> int:
        self.calls.append(("shutdown",))
        self.state = "pausing"
        await self.shutdown_gate.wait()
        self.state = "paused"
        self._finished_event.set()
        return self.shutdown_code

    def snapshot(self) -> RunSnapshot:
        self.snapshots += 1
        failed = len(self._filtered("failed"))
        done = self.finished - failed - len([i for i in self._requeued if i < self.finished])
        retries = len(self._filtered("retried"))
        running = self.state != "done"
        failed_by_kind: dict[str, int] = {}
        for i in self._filtered("failed"):
            failed_by_kind[self.kind(i)] = failed_by_kind.get(self.kind(i), 0) + 1
        stats = StatsSnapshot(
            state=self.state,
            total=self.total,
            done=done,
            failed=failed,
            in_flight=self.in_flight,
            queued=self.total - self.finished - self.in_flight + len(self._requeued),
            attempts=self.finished + self.in_flight + retries,
            retries=retries,
            workers=self.workers,
            target_workers=self.target_workers,
            elapsed_s=754.3,
            rate_1s=61.0 if running else 0.0,
            rate_10s=58.4 if running else 0.0,
            rate_60s=55.0,
            rate_avg=51.2,
            latency_p50_s=0.212,
            latency_p95_s=0.488,
            latency_p99_s=1.27,
        )
        return RunSnapshot(
            job_name="demo",
            output_dir="runs/demo",
            state=self.state,
            reason=self.reason,
            stats=stats,
            prompt_tokens=done * 120,
            completion_tokens=done * 45,
            tokens_per_s_now=9_636.0 if running else 0.0,
            tokens_per_s_avg=8_448.0,
            errors_by_kind={"http_429": 412, "http_5xx": 32, "timeout": 11},
            failed_by_kind=failed_by_kind,
            history=self.history,
            saved_at=self.saved_at,
            traffic=self.traffic,
            endpoints=self.endpoints,
            ttft_p50_s=self.ttft_s[0] if self.ttft_s else None,
            ttft_p95_s=self.ttft_s[1] if self.ttft_s else None,
            ttft_p99_s=self.ttft_s[2] if self.ttft_s else None,
            retried=retries,
            events=self.events,
            cost_usd=self.cost[0] if self.cost else None,
            cost_per_min_usd=self.cost[1] if self.cost else None,
            cost_projected_usd=self.cost[2] if self.cost else None,
            rules=self.rules,
        )

    def row_count(self, row_filter: str = "all", sort: str = "input") -> int:
        return len(self._sorted(row_filter, sort))

    def rows(self, row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        self.rows_asked.append((row_filter, start, stop))
        rows = [self.row(i) for i in self._sorted(row_filter, sort)[start:stop]]
        if self.query and self.search_done:
            wanted = set(self._matches())
            rows = [dataclasses.replace(row, matched=True) if row.index in wanted else row for row in rows]
        return rows

    def _sorted(self, row_filter: str, sort: str) -> Sequence[int]:
        """As the runner: finished rows by the key, largest first (tokens: 100 + i % 997), once `sort_ready`."""
        rows = self._filtered(row_filter)
        if sort == "input" or row_filter == "in_flight" or not self.sort_ready:
            return rows
        finished = [i for i in rows if self.row_state(i) in ("done", "failed")]
        keys = {"latency": lambda i: self.row(i).latency_ms or 0.0, "attempts": self.attempts}
        key = keys.get(sort, lambda i: 100 + i % 997)
        return sorted(finished, key=lambda i: (-key(i), i))

    def sort_status(self, sort: str) -> SortStatus:
        self.calls.append(("sort_status", sort))
        if sort == "input" or self.sort_ready:
            return SortStatus(sort)
        return SortStatus(sort, ready=False, building=True, done=self.total // 3, total=self.total)

    def search(self, query: str) -> SearchStatus:
        """Matches are the rows whose id or preview holds the query; the search is done while `search_done`."""
        self.calls.append(("search", query))
        self.query = query
        return self.search_status()

    def search_status(self) -> SearchStatus:
        if not self.query:
            return SearchStatus()
        if not self.search_done:
            return SearchStatus(self.query, self.total // 4, self.total, 0, False)
        return SearchStatus(self.query, self.total, self.total, len(self._matches()), True)

    def find(self, position: int, direction: int, row_filter: str = "all", sort: str = "input") -> int | None:
        self.calls.append(("find", position, direction, row_filter, sort))
        if not self.search_done:
            return None
        wanted = set(self._matches())
        positions = [p for p, i in enumerate(self._sorted(row_filter, sort)) if i in wanted]
        if not positions:
            return None
        if direction > 0:
            return next((p for p in positions if p > position), positions[0])
        return next((p for p in reversed(positions) if p < position), positions[-1])

    def _matches(self) -> list[int]:
        needle = self.query.lower()
        return [i for i in range(self.total) if needle in (row := self.row(i)).id or needle in row.preview.lower()]

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        state, n = self.row_state(index), self.attempts(index)
        attempts = []
        for k in range(n):
            attempt: dict[str, Any] = {
                "params": {
                    "messages": [{"role": "user", "content": f"Summarise document {index}."}],
                    "temperature": 0.7,
                    "max_tokens": 256,
                },
                "started_at": WALL_START + index * 0.5 + k * 3.0,
                "latency_ms": 180.5 + k * 40,
            }
            last = k == n - 1
            if last and state == "done":
                attempt.update(
                    result=self.row(index).preview,
                    status_code=200,
                    finish_reason="stop",
                    usage={"prompt_tokens": 120, "completion_tokens": 45, "total_tokens": 165},
                )
            elif last and state in ("in_flight", "retrying"):
                attempt.update(started_at=NOW - 1.5, latency_ms=None)
            else:
                kind = self.kind(index) if state == "failed" else "http_429"
                code, _, message = _ERRORS[kind]
                error: dict[str, Any] = {"kind": kind, "message": message, "status_code": code}
                if kind == "bad_response":
                    error["excerpt"] = "<html><body>502 Bad Gateway</body></html>"
                attempt.update(error=error, status_code=code)
            attempts.append(attempt)
        return attempts

    def failed_groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i in self._filtered("failed"):
            groups.setdefault(self.kind(i), []).append(i)
        return groups

    async def pause(self) -> None:
        self.calls.append(("pause",))
        self.state = "pausing"
        await self.pause_gate.wait()
        self.state = "paused"

    async def resume(self) -> None:
        self.calls.append(("resume",))
        # like the runner: only a job that has paused resumes
        if self.state == "paused":
            self.state = "running"

    async def stop_now(self) -> None:
        self.calls.append(("stop_now",))
        self.state = "paused"

    def set_workers(self, n: int) -> str | None:
        self.calls.append(("set_workers", n))
        if n < 1:
            return "at 1 worker already"
        if n > 1_000:
            return "at most 1,000 workers"
        self.target_workers = n
        return None

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        self.calls.append(("set_limits", requests_per_minute, tokens_per_minute))
        self.traffic = dataclasses.replace(
            self.traffic, requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute
        )
        return None

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        self.calls.append(("set_budget", max_total_tokens, max_cost_usd))
        if max_cost_usd and not self.prices:
            return "a cost budget needs the prices in the job file"
        self.traffic = dataclasses.replace(self.traffic, max_total_tokens=max_total_tokens, max_cost_usd=max_cost_usd)
        return None

    def reset_traffic(self) -> str | None:
        self.calls.append(("reset_traffic",))
        self.traffic = dataclasses.replace(self.traffic, held_s=0.0, held_because=None, pace_per_minute=0.0)
        return None

    async def save(self) -> SaveReport:
        self.calls.append(("save",))
        await self.save_gate.wait()
        self.saved_at = NOW
        return SaveReport(results=self.finished, path="runs/demo/results.jsonl", saved_at=NOW)

    def retry(self, indexes: Sequence[int]) -> int:
        self.calls.append(("retry", tuple(indexes)))
        queued = [i for i in indexes if self.row_state(i) == "failed"]
        self._requeued.update(queued)
        self._lists.clear()
        if queued and self.state == "done":  # as the runner does, the next run() takes them up
            self.finished, self.in_flight, self.state = self.finished - len(queued), len(queued), "running"
        return len(queued)


def make_app(run: ScriptedRun, **options: Any) -> TokenFlowApp:
    """The dashboard with everything that changes fixed: clock, time zone, lag, theme, animations."""
    options = {"clock": lambda: NOW, "tz": UTC, "lag_probe": FixedLag(), **options}
    app = TokenFlowApp(run, **options)
    app.animation_level = "none"
    app.theme = "textual-dark"
    return app


class Notes(list[str]):
    """A message hook for `run_test` that keeps the text of every notification."""

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.append(message.notification.message)


async def settle(pilot: Pilot, *worker_names: str) -> None:
    """Wait for the app's workers of those names to end, then for the app to process what followed."""
    await pilot.pause()
    for worker in [w for w in pilot.app.workers if w.name in worker_names]:
        with contextlib.suppress(WorkerFailed):
            await worker.wait()
    await pilot.pause()


# what the rules panel shows of a job with three checks and three rules, the last two idle, with prices
RULE_LINES = (
    RuleLine("check finish_reason", "finish_reason", 214, 190, 61_230, 0.0123),
    RuleLine("check json_schema", "json_schema", 87, 71, 40_112, 0.0081),
    RuleLine("check regex", "regex", 0, 0, 0, 0.0),
    RuleLine("rule 1", "finish_reason = length", 214, 190, 61_230, 0.0123),
    RuleLine("rule 2", "check_failed = json_schema", 80, 71, 40_112, 0.0081),
    RuleLine("rule 3", "error = timeout", 0, 0, 0, 0.0),
)

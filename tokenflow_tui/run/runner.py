"""The job runner: job → engine → finished requests → store and statistics.

One piece that every front end hosts unchanged: the headless progress printer and the dashboard
both call `run()` on their event loop and pull `snapshot()` on a timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..endpoint.results import is_failed_result
from ..engine import Clock, StatsSnapshot, SystemClock, TokenFlowRequest, TokenFlowRequestTrajectory, TokenFlowTask
from ..engine.error_kinds import HANDLER_EXCEPTION
from ..engine.events import UnexpectedUserException
from ..engine.payload import payload_error, payload_usage
from ..engine.task import DONE, IDLE, PAUSED, RUNNING
from ..job.formats.reading import input_description
from ..job.inputs import InputSummary, iter_input
from ..job.model import Job
from ..store.errors import StoreError
from ..store.export import STATE_INPUT_KEY, STATE_REQUESTS_KEY, STATE_RESULTS_KEY
from ..store.lock import LockedError
from ..store.records import build_record, record_error_kind
from ..store.results_file import RESULTS_FILE, WRITE_INTERVAL_S, ResultsSummary
from ..store.state_file import STATE_FILE, write_state
from ..traffic import Traffic
from .contract import (
    EndpointView,
    RequestRow,
    RunSnapshot,
    RunState,
    SaveReport,
    SearchStatus,
    SortStatus,
    TrafficView,
    format_usd,
)
from .endpoint_pool import EndpointPool
from .events import EventLog
from .exit_codes import EXIT_DONE, EXIT_INTERRUPTED
from .handler_deadline import HandlerWithDeadline
from .opening import STATE_CHANGES_KEY, Confirm, OpenedRun, RunError, open_run
from .part import InputPart
from .request_index import RequestTable, attempt_status, record_failure_label, record_preview, record_tokens
from .rows import HeldRequests, RunRows, Sources
from .rules_stats import rule_lines
from .statistics import RunStats, cost_rates
from .unreachable import Unreachable

if TYPE_CHECKING:
    from .endpoint_setup import RunEndpoint

STATE_VERSION = 1


Handler = Callable[[TokenFlowRequestTrajectory], Awaitable[tuple[Any, ...]]]


# the engine's task states as the front ends name them (its "stopping" is told apart in _state_name)
_RUN_STATES: dict[str, RunState] = {IDLE: "starting", RUNNING: "running", PAUSED: "paused", DONE: "done"}


class JobRunner:
    """Runs one job on the running event loop; implements `view.RunControl`."""

    def __init__(
        self,
        job: Job,
        *,
        workers: int | None = None,
        retry_failed: bool = False,
        restart: bool = False,
        accept_changes: bool = False,
        confirm: Confirm = lambda question: True,
        clock: Clock | None = None,
        save_interval_s: float = 10.0,
        environ: Mapping[str, str] = os.environ,
        part: InputPart | None = None,
        looking: bool = False,
    ) -> None:
        self.job = job
        self._part = part  # a shard of a job run on a cluster: only these input lines
        self._looking = looking  # opened to be looked at (`watch` of a stopped run): no event of its own
        self.output_dir = job.output
        self._summary = InputSummary(0, ())
        self._workers = workers or job.workers.count
        self._retry_failed = retry_failed
        self._restart, self._accept_changes, self._confirm = restart, accept_changes, confirm
        # the dashboard's +/- and ] / [ stop here (validate says "up to N from the dashboard")
        self._max_workers = max(self._workers, job.workers.max)
        self._clock: Clock = clock or SystemClock()
        self._save_interval_s = save_interval_s
        self._environ = environ
        self._builtin = job.handler is None
        self._table = RequestTable(0)
        self._stats = RunStats()
        self._elapsed_before = 0.0
        self._attempts_before = 0  # of earlier runs of this output
        self._retries_before = 0
        self._opened: OpenedRun | None = None  # the output, held from open() to close()
        self._held = HeldRequests()
        self._rows = RunRows(self._table, self._held, self._ledger, None, self._builtin)
        self._again: list[tuple[int, Any]] = []  # queued again by retry() once the engine's task was done
        self._user_handler: Handler | None = None
        self._endpoint: RunEndpoint | None = None
        self._task: TokenFlowTask | None = None
        self._traffic: Traffic | None = None
        self._unreachable: Unreachable | None = None  # the built-in handler's dead-server detector
        self._pool: EndpointPool | None = None  # with [[endpoints]]: where each attempt goes
        self._save_lock = asyncio.Lock()
        self._saved_at: float | None = None
        self._last_save = SaveReport(0, str(self.output_dir / RESULTS_FILE), 0.0)
        self._reason: str | None = None
        self._stopping_hard = False
        self._shutdown = asyncio.Event()
        self._pending: set[asyncio.Future[Any]] = set()
        self._done = 0  # over every run of this output, as results.jsonl says
        self._failed = 0
        self._fingerprint: dict[str, str] = {}
        self._save_failed = False  # the last save failed: saves are tried every second
        self._resume_after_save = False  # the failed save paused the job: the next one that works resumes it
        self.unwritten = 0  # finished records given up at close because they could not be written
        self._input: dict[str, Any] = {}  # the input's format and columns, kept for export
        sections = [named.endpoint for named in job.endpoints] or ([job.endpoint] if job.endpoint else [])
        secrets = [environ.get(e.api_key_env, "") for e in sections if e.api_key_env]
        self._events = EventLog(self.output_dir, self._clock.time, secrets)
        self._holds_seen = 0
        # queued again, their last record of two attempts or more: in the figures until they finish again
        self._requeued_retried: set[int] = set()

    # ----- opening and resuming ------------------------------------------------------------

    def open(self) -> None:
        """Take the output directory, repair and read earlier progress; import what the run needs.

        Raises JobError for a bad input or handler file and RunError (a sentence) when the output
        cannot be used. The command line calls it before the event loop starts, so that these imports
        do not stall the loop.
        """
        try:
            self._open()
        except (StoreError, LockedError) as error:
            self.close()
            raise RunError(str(error)) from None
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        if not self._builtin:
            from ..job.handler_loader import load_handler

            # a broken handler file is a bad job: said before anything is written (§2.1)
            self._user_handler = load_handler(self.job)
        if self.job.endpoint is not None:
            from .endpoint_setup import RunEndpoint  # the HTTP stack: only a run with an endpoint needs it

            self._endpoint = RunEndpoint(self.job)
        opened = self._opened = open_run(
            self.job,
            self._retry_failed,
            restart=self._restart,
            accept_changes=self._accept_changes,
            confirm=self._confirm,
        )
        self._input = input_description(self.job)
        self._summary = opened.summary
        self._fingerprint = opened.fingerprint
        self._table = opened.table
        sent_body = self._sent_body if self._builtin and self._endpoint is not None else None
        sources = Sources(self._results_end, lambda skip: iter_input(self.job, skip=skip), self._clock.monotonic)
        self._rows = RunRows(self._table, self._held, self._ledger, opened.reader, self._builtin, sent_body, sources)
        self._stats = opened.stats
        self._elapsed_before = opened.elapsed_s
        self._attempts_before = opened.attempts
        self._retries_before = opened.retries
        if self._workers == self.job.workers.count and opened.workers is not None:
            self._workers = min(opened.workers, self._max_workers)
        self._done, self._failed = opened.done, opened.failed
        self._requeued_retried = opened.requeued_retried
        self._events.load()
        finished = self._done + self._failed
        if self._looking:
            return
        if finished:
            self._events.note("open", f"resumed: {finished:,} of {self._count():,} requests finished earlier")
        else:
            self._events.note("open", f"started: {self._count():,} requests")

    @property
    def requeued(self) -> int:
        """Failed requests that opening queued again (`retry_failed`)."""
        return len(self._opened.requeued) if self._opened is not None else 0

    @property
    def traffic(self) -> Traffic | None:
        """The run's traffic control once it started (the shards of a cluster run share limits and holds through it)."""
        return self._traffic

    @property
    def notes(self) -> list[str]:
        """What opening did that the user should hear of (progress moved aside, changes accepted)."""
        return list(self._opened.notes) if self._opened is not None else []

    # ----- RunControl --------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until every request is finished or `shutdown()`; the results stay readable after.

        Requests that `retry` queues once every request has finished run in one more round: in this
        call when it has not returned yet, else in the next call of `run()`.
        """
        if self._task is not None and self._task.state != "done":
            raise RuntimeError("JobRunner.run: the run is still going")
        if self._opened is None:
            self.open()
        try:
            if self._traffic is None:
                self._traffic = self._build_traffic()  # kept over rounds: limits the user set stay
                if self._opened is not None:
                    self._traffic.retrying(self._opened.requeued)
            handler = await self._start_handler()
            while not self._shutdown.is_set():
                self._task = self._start_round(handler)
                saver = asyncio.create_task(self._save_periodically())
                writer = asyncio.create_task(self._write_periodically())
                finished = asyncio.create_task(self._task.wait_for_done())
                shutdown = asyncio.create_task(self._shutdown.wait())
                await asyncio.wait({finished, shutdown}, return_when=asyncio.FIRST_COMPLETED)
                for waiter in (saver, writer, finished, shutdown):
                    waiter.cancel()
                if self._shutdown.is_set():
                    break
                if not await self._save_at_round_end() or not self._again:
                    break
            code = self._exit_code()
            if code == EXIT_DONE:
                self._events.note(
                    "done", f"every request has a final record: {self._done:,} done, {self._failed:,} failed"
                )
            return code
        except BaseException:
            # cancelled by the host (e.g. the app exits): no worker may outlive the store
            if self._task is not None:
                await self._task.hard_stop()
            self.close()
            raise
        finally:
            if self._endpoint is not None:
                await self._endpoint.close()

    def _start_round(self, handler: Handler) -> TokenFlowTask:
        """The engine's task, started: for the input's unfinished requests, then for those queued again."""
        if self._task is None:
            requests: Iterable[tuple[int, Any]] = (
                (item.index, item.params) for item in iter_input(self.job, skip=self._skipped())
            )
            total = self._count() - self._done - self._failed
        else:
            # the finished round's figures become those of earlier runs
            stats = self._task.stats()
            self._elapsed_before += self._task.elapsed_s()
            self._attempts_before += stats.attempts
            self._retries_before += stats.retries
            requests, self._again = self._again, []
            total = len(requests)
        task = TokenFlowTask(
            handler,
            requests=requests,
            total=total,
            sink=self._on_finished,
            # a [handler]'s failures are its exceptions, the engine's default
            is_failure=is_failed_result if self._builtin else None,
            clock=self._clock,
            before_attempt=self._before_attempt,
            attempt_ended=self._attempt_ended,
            max_attempts=self.job.retry.max_attempts,
        )
        task.set_workers(self._workers)
        task.run()
        return task

    async def shutdown(self) -> int:
        """Pause softly, save and release the output; the exit code (0 when all finished, else 130)."""
        try:
            if self._task is not None and self._task.state in ("running", "stopping"):
                await self._task.soft_stop()
            try:
                await self.save()
            except RunError:
                pass  # what could not be written is sent again by the next run (close says how much)
            self.close()
        finally:
            self._shutdown.set()
        return self._exit_code()

    async def pause(self, reason: str | None = None) -> None:
        if self._task is None or self._task.state not in ("running", "stopping"):
            return
        self._reason = reason
        self._events.note("pause", f"paused: {reason}" if reason else "paused")
        await self._task.soft_stop()
        try:
            await self.save()
        except RunError:
            pass  # the snapshot's reason says so, and the periodic save tries again

    async def resume(self) -> None:
        """Run again; asked during a pause that is still finishing, it waits for that pause first."""
        while self._task is not None and self._task.state == "stopping":
            await self._task.soft_stop()
        self._resume_now()

    def _resume_now(self) -> None:
        if self._task is None or self._task.state != "paused":
            return
        self._reason = None
        self._stopping_hard = False
        self._events.note("resume", "resumed")
        if self._traffic is not None:
            self._traffic.resumed()
        if self._unreachable is not None:
            self._unreachable.resumed()
        if self._pool is not None:
            self._pool.resumed()
        self._task.run(self._workers)

    async def stop_now(self) -> None:
        if self._task is None or self._task.state not in ("running", "stopping"):
            return
        self._stopping_hard = True
        self._events.note("stop", "stopped now: the requests in flight went back to the queue")
        await self._task.hard_stop()
        await self.save()

    def set_workers(self, n: int) -> str | None:
        if n < 1:
            return "at 1 worker already: a job needs at least one"
        if n > self._max_workers:
            if self._workers >= self._max_workers:
                return f"at {self._max_workers:,} workers already: the job's limit ([workers] max)"
            refusal = f"{self._max_workers:,} workers, not {n:,}: the job's limit ([workers] max)"
            n = self._max_workers
        else:
            refusal = None
        if self._traffic is not None:
            self._traffic.workers_set(n)
        self._events.note_change("workers", "workers", f"{self._workers:,}", f"{n:,}")
        self._apply_workers(n)
        return refusal

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        if self._traffic is None:
            return "the job has not started yet"
        refusal = self._traffic.set_limits(requests_per_minute, tokens_per_minute)
        if refusal is None:
            self._events.note(
                "limits", f"limits: {requests_per_minute:g} requests/min, {tokens_per_minute:,} tokens/min (0: none)"
            )
        return refusal

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        if self._traffic is None:
            return "the job has not started yet"
        refusal = self._traffic.set_budget(max_total_tokens, max_cost_usd)
        if refusal is None:
            self._events.note("budget", f"budgets: {max_total_tokens:,} tokens, {format_usd(max_cost_usd)} (0: none)")
        if refusal is None and self._traffic.budget_released():
            # the budget that paused the job is spent no more: the job goes on, at once when it is paused
            if self._task is not None and self._task.state == "paused":
                self._resume_now()
            else:
                self._background(self.resume())
        return refusal

    def reset_traffic(self) -> str | None:
        if self._traffic is None:
            return "the job has not started yet"
        self._traffic.reset()
        if self._pool is not None:
            self._pool.reset()
        return None

    async def save(self) -> SaveReport:
        """Flush and fsync results.jsonl, then write state.toml; the writing happens off the loop."""
        return await self._save(note=True)

    async def _save(self, note: bool) -> SaveReport:
        """`save`; the event log notes it when `note` (not the periodic saves, which would bury the rest)."""
        async with self._save_lock:
            if self._opened is None:
                return self._last_save  # the run is closed: everything was saved then
            # counted before the flush, so the state never claims more than the file holds
            done, failed = self._done, self._failed
            figures = self._stats.figures.to_data()
            try:
                summary = await asyncio.to_thread(self._opened.writer.flush)
                state = self._state_data(summary, done, failed, figures)
                await asyncio.to_thread(write_state, self.output_dir / STATE_FILE, state)
            except StoreError as error:
                # the unwritten records stay in memory; pausing stops more from piling up, and the
                # periodic save keeps trying (every second): once it works, the job goes on by itself
                self._reason = f"saving failed: {error}"
                self._save_failed = True
                if self._task is not None and self._task.state == "running":
                    self._resume_after_save = True
                    self._task.stop_soon()
                    await self._task.soft_stop()
                raise RunError(f"{self._reason}; the job is paused until saving works again") from None
            if self._save_failed:
                self._save_failed = False
                self._reason = None
            if self._resume_after_save:
                self._resume_after_save = False
                self._background(self.resume())
            self._saved_at = state["saved_at"]
            self._last_save = SaveReport(summary.records, str(self.output_dir / RESULTS_FILE), self._saved_at)
            if note:
                self._events.note("save", f"saved {summary.records:,} results")
            await asyncio.to_thread(self._events.flush)
            return self._last_save

    def retry(self, indexes: Sequence[int]) -> int:
        """Queue failed requests again; once the run is done, they wait for `run()` (see there)."""
        if self._task is None or self._opened is None:
            return 0
        again = []
        labels = []  # of the failures queued again, for the storm detector
        for index in indexes:
            record = self._rows.read_record(self._table.offsets[index])
            if record is None or (kind := self._table.requeue(index)) is None:
                continue
            self._stats.unfail(kind)
            self._failed -= 1
            if len(record["attempts"]) >= 2:
                self._requeued_retried.add(index)
            # the first attempt's params are the input line as it was read
            again.append((index, record["attempts"][0]["params"]))
            labels.append(record_failure_label(record))
        if self._traffic is not None:
            self._traffic.retrying(labels)
        if self._task.state == "done":
            self._again.extend(again)
        elif again:
            self._task.add_requests(again)
            queued = {index for index, _ in again}
            self._held.queued(r for r in self._task.waiting() if r.id in queued)
        return len(again)

    def latency_data(self) -> dict[str, object]:
        """The job's attempt latencies as histogram data, for a driver to merge with other shards'."""
        return self._stats.figures.latency.to_data()

    def snapshot(self) -> RunSnapshot:
        elapsed = self._elapsed()
        stats = self._overall_stats(elapsed)
        state = self._state_name()
        tokens = self._stats.total_tokens
        ttft_p50, ttft_p95, ttft_p99 = self._stats.ttft_percentiles()
        figures = self._stats.figures
        p50, p95, p99 = figures.latency.percentiles((50, 95, 99))
        # the whole job's, over every run and retry round, as `tokenflow report` reads them from the files
        stats = dataclasses.replace(
            stats,
            rate_avg=figures.records / elapsed if elapsed > 0 else 0.0,
            latency_p50_s=p50,
            latency_p95_s=p95,
            latency_p99_s=p99,
        )
        traffic = self._traffic.view() if self._traffic is not None else TrafficView()
        if traffic.holds > self._holds_seen:
            self._holds_seen = traffic.holds
            self._events.note("hold", f"dispatch held for every worker: {traffic.held_because or 'no reason given'}")
        per_minute, projected = cost_rates(
            traffic.cost_usd, tokens, self._stats.tokens_rate(elapsed, 60) * 60, stats.finished, self._count()
        )
        return RunSnapshot(
            job_name=self.job.name,
            output_dir=str(self.output_dir),
            state=state,
            reason=self._reason,
            stats=stats,
            prompt_tokens=self._stats.prompt_tokens,
            completion_tokens=self._stats.completion_tokens,
            tokens_per_s_now=self._stats.tokens_rate(elapsed),
            tokens_per_s_avg=tokens / elapsed if elapsed > 0 else 0.0,
            errors_by_kind=dict(self._stats.errors_by_kind),
            failed_by_kind={k: v for k, v in self._stats.failed_by_kind.items() if v},
            history=self._stats.history(elapsed),
            saved_at=self._saved_at,
            unsaved=self._unsaved(),
            ttft_p50_s=ttft_p50,
            ttft_p95_s=ttft_p95,
            ttft_p99_s=ttft_p99,
            traffic=traffic,
            cost_usd=traffic.cost_usd,
            cost_per_min_usd=per_minute,
            cost_projected_usd=projected,
            retried=figures.retried - len(self._requeued_retried) + self._retrying(),
            longest_in_flight_s=self._longest_in_flight(stats),
            events=self._events.events(),
            rules=rule_lines(self.job, figures.rules) if self.job.checks or self.job.retry.rules else (),
            endpoints=self._endpoint_views(),
        )

    def _endpoint_views(self) -> tuple[EndpointView, ...]:
        if self._pool is not None:
            return self._pool.views(self._stats.figures.endpoints)
        return ()

    def _retrying(self) -> int:
        """Unfinished requests on their second attempt or later (finished ones are in the figures)."""
        return sum(1 for r in self._held.requests.values() if r.request_trajectory.length() >= 2)

    def _longest_in_flight(self, stats: StatsSnapshot) -> float | None:
        """In the tail (nothing queued), how long the oldest attempt in flight has been running."""
        if self._task is None or stats.queued > 0 or not stats.in_flight:
            return None
        now = self._clock.time()
        starts = [r.request_trajectory.last().started_at for r in self._task.in_flight()]
        started = [t for t in starts if t is not None]
        return max(0.0, now - min(started)) if started else None

    def row_count(self, row_filter: str = "all", sort: str = "input") -> int:
        return self._rows.row_count(row_filter, sort)

    def rows(self, row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        return self._rows.rows(row_filter, start, stop, sort)

    def sort_status(self, sort: str) -> SortStatus:
        return self._rows.sort_status(sort)

    def search(self, query: str) -> SearchStatus:
        return self._rows.search(query)

    def search_status(self) -> SearchStatus:
        return self._rows.search_status()

    def find(self, position: int, direction: int, row_filter: str = "all", sort: str = "input") -> int | None:
        return self._rows.find(position, direction, row_filter, sort)

    def _results_end(self) -> tuple[Path, int]:
        """results.jsonl and how many of its bytes hold whole records, the buffered ones written first."""
        path = self.output_dir / RESULTS_FILE
        if self._opened is not None:
            self._opened.writer.write_buffered()
            return path, self._opened.writer.summary.size
        return path, path.stat().st_size if path.exists() else 0

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        return self._rows.trajectory(index)

    def failed_groups(self) -> dict[str, list[int]]:
        return self._rows.failed_groups()

    # ----- internals ---------------------------------------------------------------------------

    def _sent_body(self, line: Any, endpoint_name: str | None = None) -> dict[str, Any]:
        """The body the built-in handler sends for an input line, for the trajectory (a Batch line's too, and
        a streamed one's); with [[endpoints]], with the model of the endpoint the attempt went to."""
        from ..endpoint.openai_handler import base_body, line_body  # loaded already: the run has an endpoint
        from .endpoint_setup import base_params

        endpoint = self.job.endpoint
        assert endpoint is not None
        model = next((e.endpoint.model for e in self.job.endpoints if e.name == endpoint_name), endpoint.model)
        base = base_body(model, base_params(self.job), endpoint.stream)
        return line_body(base, line, endpoint.api == "chat")[1]

    async def _start_handler(self) -> Handler:
        endpoint = self._endpoint
        base_url = await endpoint.start() if endpoint is not None else None
        if self._user_handler is not None:
            if base_url is not None:
                # a user's handler does its own requests: this tells it where the endpoint is
                os.environ["TOKENFLOW_BASE_URL"] = base_url
            assert self.job.handler is not None
            return HandlerWithDeadline(self._user_handler, self.job.handler.timeout_s, self.job.retry)
        assert endpoint is not None and self._traffic is not None and self.job.endpoint is not None
        key_env = self.job.endpoint.api_key_env
        api_key = self._environ.get(key_env) if key_env else None
        assert base_url is not None
        note_streamed, elapsed = self._stats.note_streamed, self._elapsed
        if self.job.endpoints:
            return self._start_pool(endpoint, lambda n: note_streamed(elapsed(), n))
        self._unreachable = Unreachable(base_url, self._clock, self._running, self._pause_by_itself)
        return endpoint.builtin_handler(
            self._workers_cap(),
            api_key,
            self._traffic,
            self._on_auth_error,
            self._unreachable,
            lambda n: note_streamed(elapsed(), n),
        )

    def _start_pool(self, endpoint: RunEndpoint, on_tokens: Callable[[int], None]) -> Handler:
        """[[endpoints]]: each with its handler, traffic control and dead-server detector, chosen per attempt."""
        pool = self._pool = EndpointPool(
            self.job,
            clock=self._clock,
            running=self._running,
            pause_job=self._pause_by_itself,
            note=self._events.note,
            spent=lambda: (self._stats.prompt_tokens, self._stats.completion_tokens),
            sending=lambda: self._task.sending() if self._task is not None else 0,
            sent_at=lambda: self._task.attempt_sent_at() if self._task is not None else None,
            addresses=endpoint.addresses,
        )
        endpoint.route_handlers(pool.routes, self._workers_cap(), self._environ, pool.refused_key, on_tokens)
        return pool.handler

    def _background(self, work: Awaitable[Any]) -> None:
        """Run `work` on the loop, holding a reference so it is not collected before it ends."""
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _workers_cap(self) -> int:
        return self._max_workers

    def _on_auth_error(self, status_code: int, message: str) -> None:
        variable = self.job.endpoint.api_key_env if self.job.endpoint else None
        hint = f"check the key in ${variable}" if variable else "check the endpoint's key"
        self._pause_by_itself(f"the server refused the key ({status_code}: {message}); {hint}, then resume")

    def _pause_by_itself(self, reason: str) -> None:
        """The job pauses on its own (a refused key, a budget, a storm of errors), saying why."""
        if self._task is None or self._task.state != "running" or self._reason is not None:
            return
        self._task.stop_soon()  # at once: no worker may start another request meanwhile
        self._reason = reason
        self._background(self.pause(reason))

    def _build_traffic(self) -> Traffic:
        """Rate limits, slow-down on 429, adaptive workers, budgets and the storm detector, for this run."""
        return Traffic(
            self.job,
            self._workers,
            clock=self._clock,
            running=self._running,
            pause=self._pause_by_itself,
            apply_workers=self._apply_workers,
            spent=lambda: (self._stats.prompt_tokens, self._stats.completion_tokens),
            sending=lambda: self._task.sending() if self._task is not None else 0,
            sent_at=lambda: self._task.attempt_sent_at() if self._task is not None else None,
        )

    def _running(self) -> bool:
        return self._task is not None and self._task.state == "running"

    def _apply_workers(self, n: int) -> None:
        self._workers = n
        if self._task is not None:
            self._task.set_workers(n)

    async def _before_attempt(self, request: TokenFlowRequest) -> None:
        """Traffic control's gate; the request is held (waiting, not in flight) until it opens."""
        assert self._traffic is not None
        self._held.hold(request)
        if self._unreachable is not None:
            await self._unreachable.gate(request)
        await self._traffic.before_attempt(request)
        if self._pool is not None:
            await self._pool.before_attempt(request)

    def _attempt_ended(self, request: TokenFlowRequest, payload: Any) -> None:
        """Each attempt's tokens and error kind, noted for the charts, then told to traffic control."""
        assert self._traffic is not None
        element = request.request_trajectory.last()
        if element.action is not None:  # a cancelled attempt runs again: it tells nothing
            result = element.result
            usage, kind = self._attempt_figures(result, payload)
            if type(result) is dict and "ttft_ms" in result:  # a streamed answer of the built-in handler
                self._stats.note_attempt(
                    self._elapsed(), usage, kind, result["ttft_ms"], result.get("streamed_tokens") or 0
                )
            else:
                self._stats.note_attempt(self._elapsed(), usage, kind)
        self._traffic.attempt_ended(request.request_trajectory)
        if self._unreachable is not None:
            self._unreachable.attempt_ended()
        if self._pool is not None:
            self._pool.attempt_ended(request)

    def _attempt_figures(self, result: Any, payload: Any) -> tuple[Any, str | None]:
        """The tokens an attempt used and the kind of its error (None when it went well)."""
        if type(result) is UnexpectedUserException:
            return None, HANDLER_EXCEPTION
        error = result.get("error") if type(result) is dict else None
        kind = error.get("kind") if type(error) is dict else None
        if self._builtin:
            return result.get("usage"), kind
        declared = payload_error(payload)
        return payload_usage(payload), declared["kind"] if declared is not None else kind

    def _ledger(self) -> tuple[list[TokenFlowRequest], list[TokenFlowRequest]]:
        """The engine's requests in flight now and those held back at the gate."""
        if self._task is None:
            return [], []
        return self._task.in_flight(), self._task.held_back()

    def _on_finished(self, request: TokenFlowRequest) -> None:
        assert self._opened is not None
        record = build_record(request, self._builtin, self._opened.job_version)
        index = request.id
        if self._table.offsets[index] >= 0:  # queued again after it failed: that record is no longer its last one
            self._stats.figures.superseded(2 if index in self._requeued_retried else 1)
            self._requeued_retried.discard(index)
        offset = self._opened.writer.append(record)
        self._stats.figures.add(record, offset)
        self._held.finished(index)
        failed_kind = record_error_kind(record) if record["status"] == "failed" else None
        if failed_kind is None:
            self._done += 1
        else:
            self._failed += 1
        attempts = record["attempts"]
        last = attempts[-1] if attempts else {}
        self._table.note_finished(
            index,
            record["id"],
            failed_kind,
            len(attempts),
            attempt_status(last),
            last.get("latency_ms"),
            record_preview(record),
            offset,
            record_tokens(record),
        )
        latencies = [a["latency_ms"] for a in attempts if a.get("latency_ms") is not None]
        self._stats.note_finished(self._elapsed(), failed_kind, latencies)

    def _unsaved(self) -> int:
        """Finished records that saving could not write: waiting in memory, or given up at close."""
        if self._opened is None:
            return self.unwritten
        return self._opened.writer.buffered if self._save_failed else 0

    def _overall_stats(self, elapsed: float) -> StatsSnapshot:
        """The engine's statistics of this run, with the counts of earlier runs of this output."""
        count = self._count()
        if self._task is None:
            finished = self._done + self._failed
            return StatsSnapshot(
                "idle",
                count,
                self._done,
                self._failed,
                0,
                count - finished,
                self._attempts_before,
                self._retries_before,
                0,
                self._workers,
                elapsed,
                0.0,
                0.0,
                0.0,
                0.0,
                None,
                None,
                None,
            )
        engine = self._task.stats()
        queued = count - self._done - self._failed - engine.in_flight - engine.waiting
        return dataclasses.replace(
            engine,
            total=count,
            done=self._done,
            failed=self._failed,
            queued=queued,
            elapsed_s=elapsed,
            attempts=self._attempts_before + engine.attempts,
            retries=self._retries_before + engine.retries,
        )

    def _count(self) -> int:
        """The requests this runner runs: the input's, or its part's."""
        count = self._summary.count
        return count if self._part is None else self._part.size(count)

    def _skipped(self) -> Callable[[int], bool]:
        """Which input lines the first round leaves out: the finished ones, and those of other parts."""
        finished, part = self._table.is_finished, self._part
        if part is None:
            return finished
        return lambda index: not part.holds(index) or finished(index)

    def _elapsed(self) -> float:
        return self._elapsed_before + (self._task.elapsed_s() if self._task is not None else 0.0)

    def _state_name(self) -> RunState:
        if self._task is None:
            return "starting"
        state = self._task.state
        if state == "stopping":
            return "stopping" if self._stopping_hard else "pausing"
        if state == DONE and self._save_failed:
            return "paused"  # every request finished, not every record saved: it waits for the disk
        return _RUN_STATES[state]

    async def _save_at_round_end(self) -> bool:
        """The round's last save; while saving fails (a full disk) it is tried again every second, as during
        the round, until it works (True) or the run is shut down (False: closing says what was not written)."""
        while True:
            try:
                await self.save()
                return True
            except RunError:
                pass  # the reason is shown (the dashboard, the progress lines): room made, the next try works
            shutdown = asyncio.ensure_future(self._shutdown.wait())
            later = asyncio.ensure_future(self._clock.sleep(min(self._save_interval_s, 1.0)))
            await asyncio.wait({shutdown, later}, return_when=asyncio.FIRST_COMPLETED)
            shutdown.cancel()
            later.cancel()
            if self._shutdown.is_set():
                return False

    def _exit_code(self) -> int:
        # every request finished, and every record written: what could not be saved runs again next time
        if self._done + self._failed >= self._count() and not self._unsaved():
            return EXIT_DONE
        return EXIT_INTERRUPTED

    def _state_data(self, results: ResultsSummary, done: int, failed: int, figures: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "job": self.job.name,
            "fingerprint": self._fingerprint,
            "saved_at": self._clock.time(),
            STATE_REQUESTS_KEY: self._summary.count,
            STATE_RESULTS_KEY: results.to_data(),
            STATE_INPUT_KEY: self._input,
            "done": done,
            "failed": failed,
            "workers": self._workers,
            "paused": self._task is not None and self._task.state == "paused",
            "elapsed_s": self._elapsed(),
            "attempts": self._attempts_before + (self._task.stats().attempts if self._task is not None else 0),
            "retries": self._retries_before + (self._task.stats().retries if self._task is not None else 0),
            "stats": self._stats.to_data(figures),
            "job_version": self._opened.job_version if self._opened is not None else "",
            STATE_CHANGES_KEY: self._opened.history if self._opened is not None else [],
        }

    async def _save_periodically(self) -> None:
        while True:
            await self._clock.sleep(min(self._save_interval_s, 1.0) if self._save_failed else self._save_interval_s)
            await self._try_save()

    async def _write_periodically(self) -> None:
        """Hand finished records to the file often (no fsync): a kill -9 then sends few of them again."""
        while True:
            await self._clock.sleep(WRITE_INTERVAL_S)
            writer = self._opened.writer if self._opened is not None else None
            if writer is not None and writer.buffered:
                # off the loop: a write may wait for the disk when the page cache is full
                await asyncio.to_thread(writer.write_buffered)
                if writer.failing and not self._save_failed:
                    self._background(self._try_save())  # a full disk pauses the job now, not at the next save

    async def _try_save(self) -> None:
        try:
            await self._save(note=False)
        except RunError:
            pass  # the job paused itself with the reason; the next save tries again

    def close(self) -> None:
        """Close the results file and let go of the output directory.

        Records that cannot be written (a full disk) are given up and counted in `unwritten`.
        """
        if self._opened is not None:
            self.unwritten += self._opened.close()
            self._opened = None
            if not self._looking:
                self._events.flush()

"""The job runner: job → engine → finished requests → store and statistics.

One piece that every front end hosts unchanged: the headless progress printer and the dashboard
both call `run()` on their event loop and pull `snapshot()` on a timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..engine import Clock, StatsSnapshot, SystemClock, TokenFlowRequest, TokenFlowRequestTrajectory, TokenFlowTask
from ..engine.error_kinds import HANDLER_EXCEPTION
from ..engine.events import UnexpectedUserException
from ..job.inputs import InputSummary, iter_input
from ..job.model import Job
from ..store.errors import StoreError
from ..store.export import STATE_REQUESTS_KEY, STATE_RESULTS_KEY
from ..store.lock import LockedError
from ..store.records import build_record
from ..store.results_file import RESULTS_FILE, WRITE_INTERVAL_S, ResultsSummary
from ..store.state_file import STATE_FILE, write_state
from ..traffic import Traffic
from .contract import RequestRow, RunSnapshot, SaveReport, TrafficView
from .exit_codes import EXIT_DONE, EXIT_INTERRUPTED
from .opening import OpenedRun, RunError, open_run
from .request_index import RequestTable, attempt_status, record_error_kind, record_preview
from .rows import HeldRequests, RunRows
from .statistics import RunStats

if TYPE_CHECKING:
    from .endpoint_setup import RunEndpoint

STATE_VERSION = 1


Handler = Callable[[TokenFlowRequestTrajectory], Awaitable[tuple[Any, ...]]]
# the index of the request whose attempt this worker makes: set before the attempt, read when its handler ends
_ATTEMPT: ContextVar[int] = ContextVar("tokenflow_attempt")


class JobRunner:
    """Runs one job on the running event loop; implements `view.RunControl`."""

    def __init__(
        self,
        job: Job,
        *,
        workers: int | None = None,
        retry_failed: bool = False,
        clock: Clock | None = None,
        save_interval_s: float = 10.0,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.job = job
        self.output_dir = job.output
        self._summary = InputSummary(0, ())
        self._workers = workers or job.workers.count
        self._retry_failed = retry_failed
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
        self._rows = RunRows(self._table, self._held, self._read_record, self._builtin)
        self._again: list[tuple[int, Any]] = []  # queued again by retry() once the engine's task was done
        self._user_handler: Handler | None = None
        self._endpoint: RunEndpoint | None = None
        self._task: TokenFlowTask | None = None
        self._traffic: Traffic | None = None
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
        opened = self._opened = open_run(self.job, self._retry_failed)
        self._summary = opened.summary
        self._fingerprint = opened.fingerprint
        self._table = opened.table
        self._rows = RunRows(self._table, self._held, self._read_record, self._builtin)
        self._stats = opened.stats
        self._elapsed_before = opened.elapsed_s
        self._attempts_before = opened.attempts
        self._retries_before = opened.retries
        if self._workers == self.job.workers.count and opened.workers is not None:
            self._workers = opened.workers
        self._done, self._failed = opened.done, opened.failed

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
            handler = self._traffic.wrap(self._counting(await self._start_handler()))
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
                await self.save()
                if not self._again:
                    break
            return self._exit_code()
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
                (item.index, item.params) for item in iter_input(self.job, skip=self._table.is_finished)
            )
            total = self._summary.count - self._done - self._failed
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
            is_failure=self._is_failure,
            clock=self._clock,
            before_attempt=self._before_attempt,
        )
        task.set_workers(self._workers)
        task.run()
        return task

    async def shutdown(self) -> int:
        """Pause softly, save and release the output; the exit code (0 when all finished, else 130)."""
        if self._task is not None and self._task.state in ("running", "stopping"):
            await self._task.soft_stop()
        try:
            await self.save()
        except RunError:
            pass  # what could not be written is sent again by the next run
        self.close()
        self._shutdown.set()
        return self._exit_code()

    async def pause(self, reason: str | None = None) -> None:
        if self._task is None or self._task.state not in ("running", "stopping"):
            return
        self._reason = reason
        await self._task.soft_stop()
        await self.save()

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
        if self._traffic is not None:
            self._traffic.resumed()
        self._task.run(self._workers)

    async def stop_now(self) -> None:
        if self._task is None or self._task.state not in ("running", "stopping"):
            return
        self._stopping_hard = True
        await self._task.hard_stop()
        await self.save()

    def set_workers(self, n: int) -> str | None:
        if n < 1:
            return "at 1 worker already: a job needs at least one"
        if n > 100_000:
            return "at most 100,000 workers"
        if self._traffic is not None:
            self._traffic.workers_set(n)
        self._apply_workers(n)
        return None

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        if self._traffic is None:
            return "the job has not started yet"
        return self._traffic.set_limits(requests_per_minute, tokens_per_minute)

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        if self._traffic is None:
            return "the job has not started yet"
        refusal = self._traffic.set_budget(max_total_tokens, max_cost_usd)
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
        return None

    async def save(self) -> SaveReport:
        """Flush and fsync results.jsonl, then write state.toml; the writing happens off the loop."""
        async with self._save_lock:
            if self._opened is None:
                return self._last_save  # the run is closed: everything was saved then
            # counted before the flush, so the state never claims more than the file holds
            done, failed = self._done, self._failed
            try:
                summary = await asyncio.to_thread(self._opened.writer.flush)
            except StoreError as error:
                # the unwritten records stay in memory; pausing stops more from piling up
                self._reason = f"saving failed: {error}"
                if self._task is not None and self._task.state == "running":
                    await self._task.soft_stop()
                raise RunError(f"{self._reason}; the job is paused: make room, then resume") from None
            state = self._state_data(summary, done, failed)
            await asyncio.to_thread(write_state, self.output_dir / STATE_FILE, state)
            self._saved_at = state["saved_at"]
            self._last_save = SaveReport(summary.records, str(self.output_dir / RESULTS_FILE), self._saved_at)
            return self._last_save

    def retry(self, indexes: Sequence[int]) -> int:
        """Queue failed requests again; once the run is done, they wait for `run()` (see there)."""
        if self._task is None or self._opened is None:
            return 0
        again = []
        for index in indexes:
            record = self._read_record(self._table.offsets[index])
            if record is None or (kind := self._table.requeue(index)) is None:
                continue
            self._stats.unfail(kind)
            self._failed -= 1
            # the first attempt's params are the input line as it was read
            again.append((index, record["attempts"][0]["params"]))
        if self._task.state == "done":
            self._again.extend(again)
        elif again:
            self._task.add_requests(again)
            queued = {index for index, _ in again}
            self._held.queued(r for r in self._task.waiting() if r.id in queued)
        return len(again)

    def snapshot(self) -> RunSnapshot:
        elapsed = self._elapsed()
        stats = self._overall_stats(elapsed)
        state = self._state_name()
        tokens = self._stats.total_tokens
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
            traffic=self._traffic.view() if self._traffic is not None else TrafficView(),
        )

    def row_count(self, row_filter: str = "all") -> int:
        return self._rows.row_count(row_filter)

    def rows(self, row_filter: str, start: int, stop: int) -> list[RequestRow]:
        return self._rows.rows(row_filter, start, stop)

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        return self._rows.trajectory(index)

    def failed_groups(self) -> dict[str, list[int]]:
        return self._rows.failed_groups()

    # ----- internals ---------------------------------------------------------------------------

    def _read_record(self, offset: int) -> dict[str, Any] | None:
        """The record at `offset` of results.jsonl (None once the run is closed)."""
        return self._opened.reader.read(offset) if self._opened is not None else None

    async def _start_handler(self) -> Handler:
        endpoint = self._endpoint
        base_url = await endpoint.start() if endpoint is not None else None
        if self._user_handler is not None:
            if base_url is not None:
                # a user's handler does its own requests: this tells it where the endpoint is
                os.environ["TOKENFLOW_BASE_URL"] = base_url
            return self._user_handler
        assert endpoint is not None and self._traffic is not None and self.job.endpoint is not None
        key_env = self.job.endpoint.api_key_env
        api_key = self._environ.get(key_env) if key_env else None
        return endpoint.builtin_handler(self._workers_cap(), api_key, self._traffic, self._on_auth_error)

    def _background(self, work: Awaitable[Any]) -> None:
        """Run `work` on the loop, holding a reference so it is not collected before it ends."""
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _workers_cap(self) -> int:
        return max(self._workers, self.job.workers.max)

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
            running=lambda: self._task is not None and self._task.state == "running",
            pause=self._pause_by_itself,
            apply_workers=self._apply_workers,
            spent=lambda: (self._stats.prompt_tokens, self._stats.completion_tokens),
        )

    def _apply_workers(self, n: int) -> None:
        self._workers = n
        if self._task is not None:
            self._task.set_workers(n)

    async def _before_attempt(self, request: TokenFlowRequest) -> None:
        """The engine counts a request in flight from here (the traffic gate's wait included)."""
        assert self._traffic is not None
        self._held.attempt_started(request)
        try:
            await self._traffic.before_attempt(request)
        except BaseException:
            self._held.attempt_ended(request.id)
            raise
        _ATTEMPT.set(request.id)

    def _counting(self, handler: Handler) -> Handler:
        """The handler, with each attempt's tokens and error kind noted for the charts, and its end for the rows."""
        note = self._stats.note_attempt
        elapsed = self._elapsed
        attempt_ended = self._held.attempt_ended

        async def counted(trajectory: TokenFlowRequestTrajectory) -> tuple[Any, ...]:
            try:
                outcome = await handler(trajectory)
            except asyncio.CancelledError:
                raise
            except Exception:
                note(elapsed(), None, HANDLER_EXCEPTION)
                raise
            finally:
                attempt_ended(_ATTEMPT.get())
            result = outcome[1] if type(outcome) is tuple and len(outcome) >= 2 else None
            if type(result) is dict:
                error = result.get("error")
                note(elapsed(), result.get("usage"), error.get("kind") if type(error) is dict else None)
            else:
                note(elapsed(), None, None)
            return outcome

        return counted

    def _is_failure(self, result: Any) -> bool:
        if type(result) is UnexpectedUserException:
            return True
        return self._builtin and type(result) is dict and "error" in result

    def _on_finished(self, request: TokenFlowRequest) -> None:
        assert self._opened is not None
        record = build_record(request, self._builtin)
        offset = self._opened.writer.append(record)
        index = request.id
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
        )
        self._stats.note_finished(self._elapsed(), failed_kind)

    def _overall_stats(self, elapsed: float) -> StatsSnapshot:
        """The engine's statistics of this run, with the counts of earlier runs of this output."""
        count = self._summary.count
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
        queued = count - self._done - self._failed - engine.in_flight
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

    def _elapsed(self) -> float:
        return self._elapsed_before + (self._task.elapsed_s() if self._task is not None else 0.0)

    def _state_name(self) -> str:
        if self._task is None:
            return "starting"
        state = self._task.state
        if state == "stopping":
            return "stopping" if self._stopping_hard else "pausing"
        return {"idle": "starting"}.get(state, state)

    def _exit_code(self) -> int:
        if self._done + self._failed >= self._summary.count:
            return EXIT_DONE
        return EXIT_INTERRUPTED

    def _state_data(self, results: ResultsSummary, done: int, failed: int) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "job": self.job.name,
            "fingerprint": self._fingerprint,
            "saved_at": self._clock.time(),
            STATE_REQUESTS_KEY: self._summary.count,
            STATE_RESULTS_KEY: results.to_data(),
            "done": done,
            "failed": failed,
            "workers": self._workers,
            "paused": self._task is not None and self._task.state == "paused",
            "elapsed_s": self._elapsed(),
            "attempts": self._attempts_before + (self._task.stats().attempts if self._task is not None else 0),
            "retries": self._retries_before + (self._task.stats().retries if self._task is not None else 0),
            "stats": self._stats.to_data(),
        }

    async def _save_periodically(self) -> None:
        while True:
            await self._clock.sleep(self._save_interval_s)
            try:
                await self.save()
            except RunError:
                pass  # the job paused itself with the reason; the next save tries again

    async def _write_periodically(self) -> None:
        """Hand finished records to the file often (no fsync): a kill -9 then sends few of them again."""
        while True:
            await self._clock.sleep(WRITE_INTERVAL_S)
            writer = self._opened.writer if self._opened is not None else None
            if writer is not None and writer.buffered:
                # off the loop: a write may wait for the disk when the page cache is full
                await asyncio.to_thread(writer.write_buffered)

    def close(self) -> None:
        """Close the results file and let go of the output directory."""
        if self._opened is not None:
            self._opened.close()  # a failed flush raises here: the file stays open for another try
            self._opened = None

"""TokenFlowTask: a pool of async workers running a handler over many requests.

Requests are pulled lazily from the input, so an input of millions is never held at once, and each
finished request goes either to the results list or, with a sink, out of the task for good.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import traceback
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from .actions import ActionContinue, ActionDone
from .checkpoint import Restored, request_from_data, request_to_data
from .clock import Clock, SystemClock
from .error_kinds import TOO_MANY_ATTEMPTS
from .events import (
    EventCallback,
    EventDispatcher,
    TokenFlowCancelledEvent,
    TokenFlowContinueEvent,
    TokenFlowDoneEvent,
    TokenFlowUserExceptionEvent,
    UnexpectedUserException,
)
from .payload import says_failed
from .stats import TICKS_PER_S, LatencyHistogram, RateWindow, StatsSnapshot
from .trajectory import (
    TokenFlowRequest,
    TokenFlowRequestTrajectory,
    TokenFlowRequestTrajectoryElement,
    new_attempt,
    new_request,
)

logger = logging.getLogger("tokenflow")

RequestFn = Callable[[TokenFlowRequestTrajectory], Awaitable[tuple[Any, ...]]]
Sink = Callable[[TokenFlowRequest], Any]
AttemptStarted = Callable[[TokenFlowRequest], None]
AttemptEnded = Callable[[TokenFlowRequest, Any], None]

IDLE, RUNNING, STOPPING, PAUSED, DONE = "idle", "running", "stopping", "paused", "done"
CHECKPOINT_VERSION = 1
# a worker whose handler never suspends would keep the loop (signals, saving, the dashboard) from
# running: every this many attempts it lets the loop go round once
_YIELD_EVERY = 256


class _Slot:
    """A worker's line in the task's ledger: the request it holds and, once sent, when its attempt was."""

    __slots__ = ("request", "sent_at")

    def __init__(self) -> None:
        self.request: TokenFlowRequest | None = None
        self.sent_at: float | None = None  # monotonic; None while `before_attempt` holds the attempt back


def _default_is_failure(result: Any) -> bool:
    return type(result) is UnexpectedUserException


class TokenFlowTask:
    """Runs `request_fn` over every request with a pool of workers on the running event loop.

    `request_params` is the seed's list (ids are the 0-based positions); `requests` instead takes
    (id, params) pairs from any iterable, read only as workers need them. `sink` receives each
    finished request once and the task keeps none; `is_failure(result)` tells which final results
    count as failed (default: the handler raised; a payload that says `failed` too, see `payload.py`).

    `before_attempt(request)` is awaited before each attempt, e.g. to hold dispatch back under a
    rate limit (the request is then waiting, not in flight); `attempt_started(request)` is called as
    the attempt is sent and `attempt_ended(request, payload)` once it has ended, with the attempt's
    result and action in the trajectory's last element (both None when it was cancelled: it runs
    again). `max_attempts` bounds every trajectory: the attempt that reaches it ends the request as
    failed (`request.failure` is `too_many_attempts`, the handler's result kept); default unbounded.
    """

    def __init__(
        self,
        request_fn: RequestFn,
        request_params: Iterable[Any] | None = None,
        event_callback: EventCallback | None = None,
        *,
        requests: Iterable[tuple[Any, Any]] | None = None,
        total: int | None = None,
        sink: Sink | None = None,
        is_failure: Callable[[Any], bool] | None = None,
        clock: Clock | None = None,
        before_attempt: Callable[[TokenFlowRequest], Awaitable[None]] | None = None,
        attempt_started: AttemptStarted | None = None,
        attempt_ended: AttemptEnded | None = None,
        max_attempts: int | None = None,
        restored: Restored | None = None,
    ) -> None:
        if request_params is not None and requests is not None:
            raise ValueError("TokenFlowTask: give request_params or requests, not both")
        if not callable(request_fn):
            raise TypeError(f"TokenFlowTask: request_fn must be an async function, got {request_fn!r}")
        if max_attempts is not None and (type(max_attempts) is not int or max_attempts < 1):
            raise ValueError(f"TokenFlowTask: max_attempts must be a whole number ≥ 1, got {max_attempts!r}")
        if request_params is not None:
            if total is None and hasattr(request_params, "__len__"):
                total = len(request_params)  # type: ignore[arg-type]
            requests = enumerate(request_params)
        self.request_fn = request_fn
        self.event_callback = event_callback
        self._events = EventDispatcher(event_callback) if event_callback is not None else None
        self._seq = itertools.count()  # numbers the requests in the order the task takes them
        # the input, each request numbered as it is taken (by zip, so that a worker makes no call for it)
        self._source: Iterator[tuple[tuple[Any, Any], int]] | None = zip(
            requests if requests is not None else (), self._seq
        )
        self._consumed_before = 0  # inputs taken by the task a checkpoint was made of
        self._numbered_elsewhere = 0  # numbers of `_seq` that no input's request got (see `_consumed`)
        self._total = total
        self._sink = sink
        self._is_failure = is_failure or _default_is_failure
        self._clock: Clock = clock or SystemClock()
        self._before_attempt = before_attempt
        self._attempt_started = attempt_started
        self._attempt_ended = attempt_ended
        self._max_attempts = max_attempts

        self._ready: deque[TokenFlowRequest] = deque()
        self._delayed: dict[asyncio.Task[None], TokenFlowRequest] = {}
        # the ledger of what the workers hold: one slot per worker, and how many attempts are sent
        self._slots: dict[asyncio.Task[None], _Slot] = {}
        self._sending = 0
        self._results: list[TokenFlowRequest] = []
        self._workers: set[asyncio.Task[None]] = set()
        self._target = 1
        self._state = IDLE
        # whether a worker may take another request: running, and no worker beyond the target (kept by
        # _set_state and _count_workers, so that a worker's loop tests one flag per request)
        self._go = False
        self._wakeup = asyncio.Event()
        self._done_event = asyncio.Event()
        self._stream: asyncio.Queue[TokenFlowRequest | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the workers run on, once run

        self._done = 0
        self._failed = 0
        # every attempt that ends counts once as done, failed or retried: the attempts are their sum,
        # plus what a checkpoint carried beyond it
        self._attempts_over = 0
        self._retries = 0
        self._carried = 0  # requests finished before a checkpoint this task was restored from
        self._elapsed_before = 0.0
        self._counted_from = 0.0  # running time at which this task's rates begin (a checkpoint's)
        # while running, running time = clock.monotonic() - _run_origin; None while not running
        self._run_origin: float | None = None
        self._finish_rate = RateWindow()
        # finishes are told to the rate window a tick (0.1 s of running time) at a time, not one by
        # one: those since the last telling all fell in the tick `_rate_tick`, which ends at `_rate_until`
        self._rate_told = 0
        self._rate_tick = 0
        self._rate_until = 0.0
        # when (clock.monotonic) running time reaches _rate_until: one comparison per finish; -inf while
        # not running (a finish then always tells)
        self._rate_due = -math.inf
        self._latency = LatencyHistogram()
        if restored is not None:
            self._restore(restored)
        self._rate_told = self._done + self._failed
        self._check_all_finished()

    def _restore(self, restored: Restored) -> None:
        """Carry on from a checkpoint's progress (see `from_checkpoint`)."""
        self._consumed_before = restored.consumed
        for request in restored.pending:
            request.seq = next(self._seq)
        self._numbered_elsewhere += len(restored.pending)
        self._ready.extend(restored.pending)
        self._done, self._failed = restored.done, restored.failed
        self._retries = restored.retries
        self._attempts_over = restored.attempts - restored.done - restored.failed - restored.retries
        self._carried = restored.done + restored.failed
        self._elapsed_before = self._counted_from = restored.elapsed_s
        self._latency = restored.latency
        self._target = restored.target_workers
        if restored.input_exhausted:
            self._source = None

    # ----- control -------------------------------------------------------------------------

    def run(self, n_workers: int | None = None) -> None:
        """Start (or resume) the workers on the running event loop and return at once."""
        if self._state in (RUNNING, STOPPING):
            raise RuntimeError(
                f"TokenFlowTask.run: the task is already {self._state}; "
                "call soft_stop() or hard_stop() before running it again"
            )
        if n_workers is not None:
            self._check_worker_count("run", n_workers)
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("TokenFlowTask.run must be called from a coroutine on a running event loop") from None
        if self._state == DONE:
            return
        if n_workers is not None:
            self._target = n_workers
        self._set_state(RUNNING)
        self._run_origin = self._clock.monotonic() - self._elapsed_before
        self._rate_due = self._run_origin + self._rate_until
        self._spawn_workers()

    def stop_soon(self) -> None:
        """Start nothing new from now on (what soft_stop does before it waits); callable from anywhere."""
        if self._state == RUNNING:
            self._set_state(STOPPING)
            self._wakeup.set()

    async def soft_stop(self) -> None:
        """Start nothing new; return once the in-flight requests have finished and been recorded."""
        self.stop_soon()
        if self._state != STOPPING:
            return
        await asyncio.gather(*list(self._workers), return_exceptions=True)
        if self._state == STOPPING:
            self._pause()

    async def hard_stop(self) -> None:
        """Cancel the in-flight requests now; each one's interrupted attempt runs again on the next run().

        They go back to the front of the queue in the order the task took them from its input. A
        handler that sets its attempt's result before letting the CancelledError through (a streamed
        answer's partial text) keeps that attempt: it is recorded, and a new one with the same params runs.
        """
        if self._state not in (RUNNING, STOPPING):
            return
        self._set_state(STOPPING)
        in_flight = {id(slot.request) for slot in self._slots.values() if slot.request is not None}
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        # each cancelled worker put its request at the front, in whatever order the workers ended
        ready, front = self._ready, []
        while ready and id(ready[0]) in in_flight:
            front.append(ready.popleft())
        ready.extendleft(sorted(front, key=_request_seq, reverse=True))
        self._pause()

    def set_workers(self, n_workers: int) -> None:
        """Change the worker count: more start at once; surplus ones leave after their current request."""
        self._check_worker_count("set_workers", n_workers)
        self._target = n_workers
        if self._state == RUNNING:
            self._spawn_workers()
            if len(self._workers) > n_workers:
                self._wakeup.set()  # idle surplus workers notice and leave

    async def wait_for_done(self) -> list[TokenFlowRequest]:
        """Every request this task finished, ordered by id (empty when a sink took them)."""
        await self._done_event.wait()
        await asyncio.gather(*list(self._workers), return_exceptions=True)
        if self._events is not None:
            await self._events.flush()
        return sorted(self._results, key=_request_id)

    def finished(self) -> list[TokenFlowRequest]:
        """The requests finished so far (none when a sink takes them), in finishing order."""
        return list(self._results)

    async def stream(self) -> AsyncIterator[TokenFlowRequest]:
        """Yield each finished request once, as it finishes; the task keeps none of them."""
        if self._sink is not None or self._stream is not None:
            raise RuntimeError("TokenFlowTask.stream: this task already hands its results to a sink")
        queue: asyncio.Queue[TokenFlowRequest | None] = asyncio.Queue()
        for finished in self._results:
            queue.put_nowait(finished)
        self._results = []
        if self._state == DONE:
            queue.put_nowait(None)
        self._stream = queue
        self._sink = queue.put_nowait
        while (request := await queue.get()) is not None:
            yield request

    def add_requests(self, requests: Iterable[tuple[Any, Any]]) -> int:
        """Queue more (id, params) requests, e.g. failed ones to try again; how many were added."""
        if self._state == DONE:
            raise RuntimeError("TokenFlowTask.add_requests: the task is done; build a new task for more requests")
        added = 0
        for request_id, params in requests:
            self._ready.append(new_request(request_id, params, next(self._seq)))
            added += 1
        self._numbered_elsewhere += added
        if self._total is not None:
            self._total += added
        if added:
            self._wakeup.set()
        return added

    def in_flight(self) -> list[TokenFlowRequest]:
        """The requests whose attempt is being sent or answered now (their handler runs)."""
        return [slot.request for slot in self._slots.values() if slot.request is not None and slot.sent_at is not None]

    def held_back(self) -> list[TokenFlowRequest]:
        """The requests whose next attempt `before_attempt` holds back now (a limit, a hold, the pace)."""
        return [slot.request for slot in self._slots.values() if slot.request is not None and slot.sent_at is None]

    def waiting(self) -> list[TokenFlowRequest]:
        """Requests taken from the input that wait for their next attempt (requeued or delayed)."""
        return list(self._ready) + list(self._delayed.values())

    def sending(self) -> int:
        """How many attempts are being sent or answered now; cheaper than `stats()`."""
        return self._sending

    def attempt_sent_at(self) -> float | None:
        """When (clock.monotonic) the attempt that the calling worker makes was sent; None outside one.

        A handler's hooks call it from within the attempt, to learn which attempt they are in.
        """
        # its loop given: asyncio.current_task() would ask for the running one (a getpid() call on 3.11)
        slot = self._slots.get(asyncio.current_task(self._loop))  # type: ignore[arg-type]
        return slot.sent_at if slot is not None else None

    def elapsed_s(self) -> float:
        """Running time so far (paused time does not count); cheaper than `stats()`."""
        return self._elapsed(self._clock.monotonic())

    @property
    def state(self) -> str:
        """idle, running, stopping, paused or done."""
        return self._state

    @property
    def target_workers(self) -> int:
        return self._target

    # ----- statistics and checkpoint ---------------------------------------------------------

    def stats(self) -> StatsSnapshot:
        elapsed = self._elapsed(self._clock.monotonic())
        counted = elapsed - self._counted_from
        self._tell_rate(elapsed)
        finished = self._done + self._failed
        in_flight = self._sending
        waiting = sum(1 for slot in self._slots.values() if slot.request is not None) - in_flight
        if self._total is not None:
            queued = self._total - finished - in_flight - waiting
        else:
            queued = len(self._ready) + len(self._delayed)
        rate = self._finish_rate.rate
        latency = self._latency.percentile
        return StatsSnapshot(
            state=self._state,
            total=self._total,
            done=self._done,
            failed=self._failed,
            in_flight=in_flight,
            waiting=waiting,
            queued=queued,
            attempts=self._attempts(),
            retries=self._retries,
            workers=len(self._workers),
            target_workers=self._target,
            elapsed_s=elapsed,
            # over running time, so that time spent paused dilutes neither them nor the ETA after a resume
            rate_1s=rate(elapsed, 1, counted),
            rate_10s=rate(elapsed, 10, counted),
            rate_60s=rate(elapsed, 60, counted),
            rate_avg=(finished - self._carried) / counted if counted > 0 else 0.0,
            latency_p50_s=latency(50),
            latency_p95_s=latency(95),
            latency_p99_s=latency(99),
        )

    def checkpoint(self) -> dict[str, Any]:
        """Plain data (dicts, lists, str, int, float, bool, None) to resume from with `from_checkpoint`.

        It holds the unfinished requests the task has taken from its input, with their trajectories
        (an attempt in flight is left out: it runs again), how many inputs were taken, and the counters.
        """
        held = [slot.request for slot in self._slots.values() if slot.request is not None]
        pending = held + list(self._ready) + list(self._delayed.values())
        held_ids = {id(request) for request in held}
        return {
            "version": CHECKPOINT_VERSION,
            "consumed": self._consumed(),
            "input_exhausted": self._source is None,
            "target_workers": self._target,
            "counters": {
                "done": self._done,
                "failed": self._failed,
                "attempts": self._attempts(),
                "retries": self._retries,
                "elapsed_s": self._elapsed(self._clock.monotonic()),
            },
            "latency_histogram": self._latency.to_data(),
            "pending": [request_to_data(request, in_flight=id(request) in held_ids) for request in pending],
        }

    @classmethod
    def from_checkpoint(
        cls,
        data: dict[str, Any],
        request_fn: RequestFn,
        request_params: Iterable[Any] | None = None,
        event_callback: EventCallback | None = None,
        **options: Any,
    ) -> TokenFlowTask:
        """A task that resumes from `checkpoint()` data, given the same input the first task had."""
        if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"TokenFlowTask.from_checkpoint: not a version {CHECKPOINT_VERSION} checkpoint")
        requests = options.pop("requests", None)
        if request_params is not None:
            requests = enumerate(request_params)
        consumed = int(data["consumed"])
        source = itertools.islice(requests if requests is not None else (), consumed, None)
        counters = data["counters"]
        pending = [request_from_data(item) for item in data["pending"]]
        total = options.pop("total", None)
        if total is None and request_params is not None and hasattr(request_params, "__len__"):
            total = len(request_params)  # type: ignore[arg-type]
        elif data.get("input_exhausted"):
            total = counters["done"] + counters["failed"] + len(pending)
        restored = Restored(
            consumed=consumed,
            input_exhausted=bool(data.get("input_exhausted")),
            pending=pending,
            done=int(counters["done"]),
            failed=int(counters["failed"]),
            attempts=int(counters["attempts"]),
            retries=int(counters["retries"]),
            elapsed_s=float(counters["elapsed_s"]),
            latency=LatencyHistogram.from_data(data.get("latency_histogram", {})),
            target_workers=int(data.get("target_workers", 1)),
        )
        return cls(request_fn, None, event_callback, requests=source, total=total, restored=restored, **options)

    # ----- internals -------------------------------------------------------------------------

    @staticmethod
    def _check_worker_count(where: str, n_workers: Any) -> None:
        if type(n_workers) is not int or n_workers < 1:
            raise ValueError(f"TokenFlowTask.{where}: n_workers must be a whole number ≥ 1, got {n_workers!r}")

    def _set_state(self, state: str) -> None:
        self._state = state
        self._count_workers()

    def _count_workers(self) -> None:
        """After a change of state, target or workers: whether workers may go on."""
        self._go = self._state == RUNNING and len(self._workers) <= self._target

    def _consumed(self) -> int:
        """How many requests the task has taken from its input.

        Each took a number of `_seq` as it was taken; every other number is counted as given elsewhere.
        """
        numbered = next(self._seq)  # how many numbers were given: this one goes to none
        self._numbered_elsewhere += 1
        return self._consumed_before + numbered - (self._numbered_elsewhere - 1)

    def _attempts(self) -> int:
        return self._done + self._failed + self._retries + self._attempts_over

    def _elapsed(self, now: float) -> float:
        origin = self._run_origin
        return self._elapsed_before if origin is None else now - origin

    def _pause(self) -> None:
        if self._run_origin is not None:
            self._elapsed_before = self._elapsed(self._clock.monotonic())
            self._run_origin = None
            self._rate_due = -math.inf
        if self._state != DONE:
            self._set_state(PAUSED)

    def _spawn_workers(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self._target - len(self._workers)):
            self._workers.add(loop.create_task(self._worker()))
        self._count_workers()

    def _end_of_input(self) -> bool:
        """The input has no request left for a worker: whether the worker should leave (the task stops).

        At the end of the input the task learns its total, and may be done.
        """
        if self._source is not None:
            self._source = None
            held = sum(1 for slot in self._slots.values() if slot.request is not None)
            self._total = self._done + self._failed + held + len(self._delayed)
            self._check_all_finished()
        return self._state != RUNNING

    def _check_all_finished(self) -> None:
        if self._total is not None and self._done + self._failed >= self._total and self._state != DONE:
            if self._source is not None and self._total == 0:
                self._source = None
            self._pause()
            self._set_state(DONE)
            self._done_event.set()
            self._wakeup.set()
            if self._stream is not None:
                self._stream.put_nowait(None)

    async def _worker(self) -> None:
        # The hot path: everything a request needs between two awaits is inlined here (taking it from
        # the input, counting its end, keeping it), because at hundreds of thousands of requests per
        # second each method call shows in the figures.
        me: asyncio.Task[None] = asyncio.current_task()  # type: ignore[assignment]
        slot = self._slots[me] = _Slot()
        monotonic = self._clock.monotonic
        wall_offset = self._clock.time() - monotonic()  # one clock read per attempt gives both
        ready = self._ready
        # the histogram's add, inlined: its list of samples (folded once a tick, by _tell_rate)
        add_latency = self._latency.samples().append
        request_fn = self.request_fn
        before, started_hook, ended_hook = self._before_attempt, self._attempt_started, self._attempt_ended
        max_attempts = self._max_attempts or 0
        is_failure = None if self._is_failure is _default_is_failure else self._is_failure
        turns = range(_YIELD_EVERY)
        try:
            while True:
                for _ in turns:
                    if not self._go:
                        return
                    if ready:
                        request = ready.popleft()
                        trajectory = request.request_trajectory
                        element = trajectory.last()
                    else:
                        source = self._source
                        try:
                            if source is None:
                                raise StopIteration
                            (request_id, params), number = next(source)
                        except StopIteration:
                            if self._end_of_input():
                                return
                            self._wakeup.clear()
                            await self._wakeup.wait()
                            continue
                        request, trajectory, element = new_attempt(request_id, params, number)
                    slot.request = request
                    try:
                        if before is not None:
                            await before(request)
                            request.waiting_for = None
                        started = slot.sent_at = monotonic()
                        self._sending += 1
                        element.started_at = started + wall_offset
                        if started_hook is not None:
                            started_hook(request)
                        try:
                            outcome = await request_fn(trajectory)
                        finally:
                            self._sending -= 1
                    except asyncio.CancelledError:
                        sent_at = slot.sent_at
                        sent = sent_at is not None
                        if (
                            sent_at is not None
                            and element.result is not None
                            and trajectory.length() < (max_attempts or 1 << 62)
                        ):
                            # the handler kept what the cut attempt brought (a streamed answer's partial text): it is
                            # an attempt, and the request runs again with the same params
                            self._keep_cut_attempt(request, element, sent_at, ended_hook)
                        else:
                            element.result = None
                            element.started_at = None
                            if sent and ended_hook is not None:
                                ended_hook(request, None)
                        slot.request = slot.sent_at = None
                        request.waiting_for = None
                        ready.appendleft(request)
                        if self._events is not None:
                            self._events.emit(TokenFlowCancelledEvent(request.id, trajectory.snapshot()))
                        raise
                    except Exception as exc:
                        if slot.sent_at is None:  # the gate failed before the attempt began
                            started = monotonic()
                        self._record_exception(request, element, started, exc, traceback.format_exc())
                        slot.request = slot.sent_at = None
                        continue
                    now = monotonic()
                    took = element.latency_s = now - started
                    add_latency(took)
                    if type(outcome) is tuple and len(outcome) == 2:
                        action, result = outcome
                        payload = None
                    elif type(outcome) is tuple and len(outcome) == 3:
                        action, result, payload = outcome
                    else:
                        self._record_bad_return(request, element, outcome, now)
                        slot.request = slot.sent_at = None
                        continue
                    kind = type(action)
                    if kind is ActionContinue and trajectory.length() >= max_attempts > 0:
                        request.failure = TOO_MANY_ATTEMPTS  # the handler's result stays the last one
                        action = ActionDone()
                        kind = ActionDone
                    if kind is not ActionDone and kind is not ActionContinue:
                        self._record_bad_return(request, element, outcome, now)
                        slot.request = slot.sent_at = None
                        continue
                    element.result = result
                    element.action = action
                    element.payload = payload
                    if ended_hook is not None:
                        ended_hook(request, payload)
                    slot.request = slot.sent_at = None
                    # the rate window, and the latencies, are told a tick at a time, retries or not
                    if now >= self._rate_due:
                        self._tell_rate(self._elapsed(now))
                    if kind is ActionDone:
                        if self._events is not None:
                            self._events.emit(TokenFlowDoneEvent(request.id, result, trajectory.snapshot(), payload))
                        # what _finish does, inlined
                        if (
                            request.failure is not None
                            or (type(result) is UnexpectedUserException if is_failure is None else is_failure(result))
                            or (payload is not None and says_failed(payload))
                        ):
                            self._failed += 1
                        else:
                            self._done += 1
                        sink = self._sink
                        if sink is None:
                            self._results.append(request)
                        else:
                            try:
                                sink(request)
                            except Exception:
                                logger.exception("result sink raised on request %r", request.id)
                        if self._total is not None and self._done + self._failed >= self._total:
                            self._check_all_finished()
                    else:
                        self._continue(request, action, result, payload)
                # a turn of the loop every _YIELD_EVERY attempts (see there)
                await asyncio.sleep(0)
        finally:
            self._workers.discard(me)
            self._count_workers()
            del self._slots[me]

    def _keep_cut_attempt(
        self,
        request: TokenFlowRequest,
        element: TokenFlowRequestTrajectoryElement,
        started: float,
        ended_hook: Callable[[TokenFlowRequest, Any], None] | None,
    ) -> None:
        """A cancelled attempt whose handler set its result: recorded, and a new attempt with the same params."""
        element.latency_s = self._clock.monotonic() - started
        element.action = ActionContinue(element.request_params)
        self._retries += 1
        if ended_hook is not None:
            ended_hook(request, None)
        request.request_trajectory.add(TokenFlowRequestTrajectoryElement(element.request_params))

    def _continue(self, request: TokenFlowRequest, action: ActionContinue, result: Any, payload: Any) -> None:
        self._retries += 1
        trajectory = request.request_trajectory
        if self._events is not None:
            self._events.emit(
                TokenFlowContinueEvent(request.id, action.continue_params, result, trajectory.snapshot(), payload)
            )
        trajectory.add(TokenFlowRequestTrajectoryElement(action.continue_params))
        if action.delay_s > 0:
            self._delay(request, action.delay_s)
        else:
            self._ready.append(request)
            self._wakeup.set()

    def _record_bad_return(
        self, request: TokenFlowRequest, element: TokenFlowRequestTrajectoryElement, outcome: Any, now: float
    ) -> None:
        message = (
            "handler must return (action, result) or (action, result, payload) with action "
            f"ActionDone() or ActionContinue(params); it returned {_short_repr(outcome)}"
        )
        self._fail_with_exception(request, element, now, message, message)

    def _record_exception(
        self,
        request: TokenFlowRequest,
        element: TokenFlowRequestTrajectoryElement,
        started: float,
        exc: Exception,
        traceback_str: str,
    ) -> None:
        now = self._clock.monotonic()
        element.latency_s = now - started
        self._latency.add(now - started)
        logger.error("handler raised on request %r: %s", request.id, exc)
        self._fail_with_exception(request, element, now, f"{type(exc).__name__}: {exc}", traceback_str)

    def _fail_with_exception(
        self, request: TokenFlowRequest, element: TokenFlowRequestTrajectoryElement, now: float, message: str, tb: str
    ) -> None:
        result = UnexpectedUserException(message, tb)
        element.result = result
        element.action = ActionDone()
        if element.started_at is not None and self._attempt_ended is not None:
            self._attempt_ended(request, None)
        if self._events is not None:
            self._events.emit(
                TokenFlowUserExceptionEvent(request.id, message, tb, request.request_trajectory.snapshot())
            )
        self._finish(request, now, True)

    def _finish(self, request: TokenFlowRequest, now: float, failed: bool) -> None:
        """Count a finished request (at `now`, by the clock) and give it to the sink (or keep it).

        The one way every request ends; it notices the end of the run.
        """
        elapsed = self._elapsed(now)
        if elapsed >= self._rate_until:
            self._tell_rate(elapsed)
        if failed:
            self._failed += 1
        else:
            self._done += 1
        if self._sink is None:
            self._results.append(request)
        else:
            try:
                self._sink(request)
            except Exception:
                logger.exception("result sink raised on request %r", request.id)
        if self._total is not None and self._done + self._failed >= self._total:
            self._check_all_finished()

    def _tell_rate(self, elapsed: float) -> None:
        """Tell the rate window of the finishes not yet told (before a new one is counted at `elapsed`).

        At the end of a tick the latencies kept since are folded into the histogram.
        """
        finished = self._done + self._failed
        if finished > self._rate_told:
            # the middle of the tick: its time times 10 is never taken for the tick before
            self._finish_rate.add((self._rate_tick + 0.5) / TICKS_PER_S, finished - self._rate_told)
            self._rate_told = finished
        if elapsed >= self._rate_until:
            # the latencies of the tick go to their buckets too: a tick's worth are few enough to keep, and
            # many enough to sort cheaply (a length check per attempt cost more than folding them)
            self._latency.fold()
            self._rate_tick = int(elapsed * TICKS_PER_S)
            self._rate_until = (self._rate_tick + 1) / TICKS_PER_S
            if self._run_origin is not None:
                self._rate_due = self._run_origin + self._rate_until

    def _delay(self, request: TokenFlowRequest, delay_s: float) -> None:
        release = asyncio.get_running_loop().create_task(self._release_later(delay_s))
        self._delayed[release] = request

    async def _release_later(self, delay_s: float) -> None:
        await self._clock.sleep(delay_s)
        request = self._delayed.pop(asyncio.current_task())  # type: ignore[arg-type]
        self._ready.append(request)
        self._wakeup.set()


def _request_id(request: TokenFlowRequest) -> Any:
    return request.id


def _request_seq(request: TokenFlowRequest) -> int:
    return request.seq


def _short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Traffic control of a run: one object the runner builds from the job and hands to engine and handler.

- `before_attempt` (the engine's hook) holds an attempt back: while the server asked everyone to
  slow down, while the adaptive controller wants fewer in flight, and until the requests- and
  tokens-per-minute buckets (and the pace, once the server refused requests) allow it.
- `attempt_ended` (the engine's hook) watches what each attempt brought: tokens (to correct the
  estimate and count the budget), overload (429, 503, timeouts) and success for the adaptive
  controller, and requests that failed for good for the storm detector.
- `on_rate_limit` and `on_headers` are the built-in handler's hooks: 429s that are more than the
  server refuses at random (`congestion`), or a spent x-ratelimit allowance, hold dispatch for every
  worker; when such 429s ask for long waits (5 s or more), or come back for requests sent after a
  hold ended (the hold did not stop them: the limit counts over a long window), dispatch is also
  paced at the rate the server accepted, until a probe above the pace is taken (`pace`).
- Live changes (limits, the pace let go, a reset) wake the requests waiting, so they wait by what
  holds now, not by what held when they started waiting.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..endpoint.retry_policy import is_retryable
from ..engine import ActionDone, Clock, TokenFlowRequest, TokenFlowRequestTrajectory, UnexpectedUserException
from ..engine.error_kinds import CHECK_FAILED, HANDLER_EXCEPTION, TIMEOUT
from ..job.model import Job
from .adaptive import AdaptiveConcurrency
from .bucket import TokenBucket
from .budget import Budget, Prices
from .congestion import TRIGGER, Congestion
from .estimate import estimate_tokens, usage_tokens
from .pace import Pace
from .ratelimit_headers import read_ratelimit_headers
from .slowdown import Rng, Slowdown
from .storm import StormDetector, failure_label
from .view import TrafficView
from .waiting import Waiting

# besides a 429, what says that the server is overloaded
_OVERLOAD_KINDS = frozenset({TIMEOUT})
_OVERLOAD_STATUSES = frozenset({503})
_TOKENS_AVERAGE_WEIGHT = 0.05  # of the newest request, in the running average of tokens per request
_ROUND_TRIP_WEIGHT = 0.05  # of the newest answer, in the running average of latency
_QUEUE_LOOK_S = 1.0  # workers beyond a second's worth of the pace look again this often
_CONFIRM_S = 10.0  # 429s this soon after a hold ended, for requests sent after it, say the hold was not enough
_PACE_AT_ONCE_S = 5.0  # 429s asking for this long or more are a limit over a long window: paced at once


class Traffic:
    """Rate limits, the global slow-down, the adaptive worker count, budgets and the storm detector.

    `running()` says whether the job runs (a held attempt gives its request back when it stops),
    `pause(reason)` pauses the job by itself with a sentence, `apply_workers(n)` sets the engine's
    worker count, and `spent()` gives the job's (prompt, completion) tokens so far, all runs included.
    What is in flight is the engine's ledger: `sending()` counts the attempts being sent or answered,
    `sent_at()` says when the attempt the calling worker makes was sent (None outside one).
    """

    def __init__(
        self,
        job: Job,
        workers: int,
        *,
        clock: Clock,
        running: Callable[[], bool],
        pause: Callable[[str], None],
        apply_workers: Callable[[int], None],
        spent: Callable[[], tuple[int, int]],
        sending: Callable[[], int],
        sent_at: Callable[[], float | None],
        rng: Rng | None = None,
    ) -> None:
        limits = job.limits
        now = clock.monotonic()
        self._clock = clock
        self._pause = pause
        self._apply_workers = apply_workers
        self._spent = spent
        self._sending = sending
        self._sent_at = sent_at
        self._request_params = job.request.params
        self._waiting = Waiting(clock, running)
        self._slowdown = Slowdown(rng or random.Random())
        self._rate_limited = Congestion()  # watching 429s
        self._pace = Pace(now)
        self._pace_allowed = limits.pace  # [limits] pace = false: never pace
        self._paced: TokenBucket | None = None  # follows the pace once the server refused requests
        self._overloaded = Congestion()  # watching 503s and timeouts
        self._requests: TokenBucket | None = None
        self._tokens: TokenBucket | None = None
        self.set_limits(limits.requests_per_minute, limits.tokens_per_minute)
        self._adaptive = (
            AdaptiveConcurrency(workers, job.workers.min, job.workers.max, now) if job.workers.adaptive else None
        )
        prices = None
        if limits.price_input_per_million_usd is not None and limits.price_output_per_million_usd is not None:
            prices = Prices(limits.price_input_per_million_usd, limits.price_output_per_million_usd)
        self._budget = Budget(limits.max_total_tokens, limits.max_cost_usd, prices)
        # a new run of a job that stopped on its budget is the user's resume
        self._budget.grant_more(*spent())
        self._storm = StormDetector()
        self._paused_for: str | None = None  # "budget" or "storm" while the job is paused by them
        self._remaining_requests: int | None = None
        self._remaining_tokens: int | None = None
        self._tokens_per_request = 0.0
        self._round_trip_s = 0.0  # the latency of recent good answers, on average

    # ----- the engine's and the handler's hooks ------------------------------------------------

    async def before_attempt(self, request: TokenFlowRequest) -> None:
        clock, waiting = self._clock, self._waiting
        reserved: dict[TokenBucket, tuple[float, float]] = {}  # bucket → (units taken, ticket)
        try:
            while True:
                waiting.check()
                now = clock.monotonic()
                release = self._slowdown.release_at(now)
                if release is not None:
                    request.waiting_for = "the server's hold"
                    await waiting.nap(release - now)
                    continue
                if self._adaptive is not None and self._sending() >= self._adaptive.target:
                    request.waiting_for = "a worker slot (adaptive workers)"
                    await waiting.slot()
                    continue
                if not reserved and self._paced is not None and self._paced.level(now) < -self._pace_queue():
                    # a second's worth waits already: the ones beyond it join the queue later, so
                    # that the queue stays short enough to follow a pace that changes
                    request.waiting_for = "the pace"
                    await waiting.nap(_QUEUE_LOOK_S)
                    continue
                wait_s = self._reserve(request, reserved, now)
                if wait_s > 0:
                    request.waiting_for = "the rate limit" if self._paced is None else "the pace"
                    await waiting.nap(wait_s)
                    continue
                break
        except asyncio.CancelledError:
            self._give_back(reserved)
            raise

    def free_now(self) -> bool:
        """Whether an attempt would go at once: nothing holds dispatch and every bucket has room (a cheap look)."""
        now = self._clock.monotonic()
        if self._slowdown.release_at(now) is not None:
            return False
        return all(
            bucket is None or bucket.level(now) >= (1.0 if bucket is not self._tokens else 0.0)
            for bucket in (self._paced, self._requests, self._tokens)
        )

    def attempt_ended(self, trajectory: TokenFlowRequestTrajectory) -> None:
        """An attempt that passed `before_attempt` ended: its result is the trajectory's last (the engine's hook)."""
        if self._adaptive is not None:
            self._waiting.free_slots(self._adaptive.target - self._sending())
        element = trajectory.last()
        if element.action is None:
            return  # cancelled: it runs again, having told nothing
        if type(element.result) is UnexpectedUserException:
            self._finished(HANDLER_EXCEPTION)
            return
        sent_at = self._sent_at()
        now = self._clock.monotonic()
        self._observe(trajectory, (element.action, element.result), now if sent_at is None else sent_at)

    def on_rate_limit(self, delay_s: float) -> None:
        """A 429 that `delay_s` later may be retried (the server's Retry-After, or the backoff without one).

        When 429s are more than the server refuses at random, every worker waits that long; when
        they ask for 5 s or more, or go on for requests sent after such a hold (and ask for 1 s or
        more), dispatch is paced from then on (until the pace lets go, or a reset).
        """
        now = self._clock.monotonic()
        sent_at = self._sent_at()
        started = now if sent_at is None else sent_at
        paced = self._paced is not None
        # once dispatch is paced, a 429 beyond the background says the pace is too fast; one that
        # comes while the pace probes above the limit read is news of the rate, not of luck
        beyond = self._rate_limited.note(
            True, started, least=1 if paced else TRIGGER, background=not (paced and self._pace.probing)
        )
        congested = beyond and self._rate_limited.overloaded()
        hold_ended = self._slowdown.until
        if congested:
            self._slowdown.hold(delay_s, now, "the server answers 429 (too many requests)", self._round_trip_s)
        if not self._pace_allowed:
            return
        # unpaced, a pace starts when the server asks for a long wait (a window of a minute is full),
        # or when a hold did not stop the 429s: the requests sent after it ended were refused as well
        # (a server that answers 429 with a Retry-After of 1 s to some requests at random is no limit)
        after_hold = 0 < hold_ended <= started <= hold_ended + _CONFIRM_S
        starts = congested and (delay_s >= _PACE_AT_ONCE_S or after_hold)
        if (beyond if paced else starts) and self._pace.overloaded(now, delay_s):
            assert self._pace.rate is not None
            self._paced = _rebucket(self._paced, self._pace.rate * 60, now)

    def on_headers(self, headers: Mapping[str, str]) -> None:
        """A response's headers: when the x-ratelimit allowance is spent, hold until it comes back."""
        limits = read_ratelimit_headers(headers)
        if limits is None:
            return
        now = self._clock.monotonic()
        # the server counted this request when it came in; the others in flight came in after it
        # (or are about to), so they are owed out of what it says remains
        in_flight = max(self._sending(), 1)
        if limits.requests is not None:
            self._remaining_requests = limits.requests.remaining
            wait_s = limits.requests.wait_s(in_flight)
            if wait_s is not None:
                self._slowdown.hold(wait_s, now, "the server's x-ratelimit-remaining-requests is spent")
        if limits.tokens is not None:
            self._remaining_tokens = limits.tokens.remaining
            wait_s = limits.tokens.wait_s(max(self._tokens_per_request, 1.0) * in_flight)
            if wait_s is not None:
                self._slowdown.hold(wait_s, now, "the server's x-ratelimit-remaining-tokens is spent")

    def hold_shared(self, seconds: float, reason: str | None) -> None:
        """Hold dispatch as another runner of the same job on the same endpoint does (the shards of a cluster run)."""
        self._slowdown.hold(seconds, self._clock.monotonic(), reason or "another shard is held", self._round_trip_s)

    # ----- what the runner and the dashboard change --------------------------------------------

    def resumed(self) -> None:
        """The job runs again after a pause: a spent budget grants one more; a storm is forgiven."""
        if self._paused_for == "storm":
            self._storm.forgive()
        self._budget.grant_more(*self._spent())
        self._paused_for = None

    def workers_set(self, n: int) -> None:
        """The user chose the worker count: the adaptive controller carries on from there."""
        if self._adaptive is not None:
            self._adaptive.reset(n, self._clock.monotonic())
            self._waiting.free_slots(n - self._sending())

    def reset(self) -> None:
        """Forget the pace, the hold and the limits read from the server: the user says the server is fine now.

        The job's own limits and the adaptive target stay; what was learnt comes back if the server
        refuses requests again.
        """
        self._pace.forget()
        self._paced = None
        self._slowdown.clear()
        self._rate_limited.forget_recent()
        self._overloaded.forget_recent()
        self._remaining_requests = self._remaining_tokens = None
        self._waiting.wake()

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        """New rate limits (0: none); why not, in a sentence, when they are not valid.

        They apply to the requests already waiting for a limit too: raised or cleared, those go
        sooner (at once when nothing holds them any more); lowered, later.
        """
        refusal = limits_refusal(requests_per_minute, tokens_per_minute)
        if refusal is not None:
            return refusal
        now = self._clock.monotonic()
        self._requests = _rebucket(self._requests, requests_per_minute, now)
        self._tokens = _rebucket(self._tokens, int(tokens_per_minute), now)
        self._waiting.wake()
        return None

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        """New budgets (0: none), counted from the start of the job; why not, in a sentence."""
        refusal = budget_refusal(max_total_tokens, max_cost_usd, self._budget.prices is not None)
        if refusal is not None:
            return refusal
        self._budget.set_limits(int(max_total_tokens), float(max_cost_usd))
        return None

    def budget_released(self) -> bool:
        """Whether the job is paused by a budget that is spent no more (raised or cleared since)."""
        return self._paused_for == "budget" and self._budget.exceeded(*self._spent()) is None

    def view(self) -> TrafficView:
        now = self._clock.monotonic()
        prompt, completion = self._spent()
        adaptive, slowdown = self._adaptive, self._slowdown
        held = slowdown.held(now)
        return TrafficView(
            requests_per_minute=self._requests.per_minute if self._requests is not None else 0.0,
            tokens_per_minute=int(self._tokens.per_minute) if self._tokens is not None else 0,
            held_s=slowdown.remaining_s(now),
            held_because=slowdown.reason if held else None,
            holds=slowdown.holds,
            adaptive=adaptive is not None,
            target_workers=adaptive.target if adaptive is not None else None,
            workers_min=adaptive.low if adaptive is not None else None,
            workers_max=adaptive.high if adaptive is not None else None,
            cuts=adaptive.cuts if adaptive is not None else 0,
            tokens_used=prompt + completion,
            max_total_tokens=self._budget.tokens_allowed,
            cost_usd=self._budget.cost_usd(prompt, completion),
            max_cost_usd=self._budget.cost_allowed,
            remaining_requests=self._remaining_requests,
            remaining_tokens=self._remaining_tokens,
            pace_per_minute=self._pace.rate * 60 if self._paced is not None and self._pace.rate else 0.0,
            sent=self._sending(),
        )

    # ----- internals ---------------------------------------------------------------------------

    def _reserve(
        self, request: TokenFlowRequest, reserved: dict[TokenBucket, tuple[float, float]], now: float
    ) -> float:
        """Take a request and its estimated tokens from the buckets not taken from yet; seconds to wait for all.

        `reserved` holds what this request took before: a bucket that is gone (its limit cleared)
        holds it no more; a rate changed meanwhile applies to its ticket.
        """
        if not reserved and self._paced is None and self._requests is None and self._tokens is None:
            return 0.0  # no limit, the usual case: every attempt asks
        if self._paced is not None:
            assert self._pace.rate is not None
            self._paced.set_rate(self._pace.rate * 60, now)  # the pace grows with every good answer
        buckets = [bucket for bucket in (self._paced, self._requests) if bucket is not None]
        for bucket in [bucket for bucket in reserved if bucket not in buckets and bucket is not self._tokens]:
            del reserved[bucket]
        for bucket in buckets:
            if bucket not in reserved:
                reserved[bucket] = (1.0, bucket.take(1, now))
        if self._tokens is not None and self._tokens not in reserved:
            tokens = self._estimate(request.request_trajectory)
            reserved[self._tokens] = (tokens, self._tokens.take(tokens, now))
        return max((bucket.wait_s(ticket, now) for bucket, (_, ticket) in reserved.items()), default=0.0)

    def _pace_queue(self) -> float:
        """Reservations of the pace that may wait at once: a second's worth (one at least)."""
        assert self._pace.rate is not None
        return max(self._pace.rate * _QUEUE_LOOK_S, 1.0)

    def _give_back(self, reserved: dict[TokenBucket, tuple[float, float]]) -> None:
        now = self._clock.monotonic()
        for bucket, (units, _) in reserved.items():
            if bucket in (self._paced, self._requests, self._tokens):
                bucket.adjust(-units, now)

    def _estimate(self, trajectory: TokenFlowRequestTrajectory) -> float:
        return float(estimate_tokens(trajectory.last().request_params, self._request_params))

    def _observe(self, trajectory: TokenFlowRequestTrajectory, outcome: Any, started: float) -> None:
        now = self._clock.monotonic()
        action = outcome[0] if type(outcome) is tuple and outcome else None
        result = outcome[1] if type(outcome) is tuple and len(outcome) >= 2 else None
        final = type(action) is ActionDone
        error = result.get("error") if type(result) is dict else None
        used = usage_tokens(result.get("usage")) if type(result) is dict else None
        if used is not None:
            self._tokens_per_request += _TOKENS_AVERAGE_WEIGHT * (used - self._tokens_per_request)
        if self._tokens is not None:
            # the estimate was taken before sending; what the server counted replaces it
            self._tokens.adjust((used or 0) - self._estimate(trajectory), now)
        if type(error) is dict:
            kind, status = error.get("kind"), error.get("status_code")
            if status == 429:
                overloaded = self._slowdown.held(now)  # on_rate_limit judged it
            else:
                self._rate_limited.note(False, started)
                # by arrival: a timeout is news of now, though its request was sent long ago
                overloaded = self._overloaded.note(kind in _OVERLOAD_KINDS or status in _OVERLOAD_STATUSES, now)
            if overloaded and self._adaptive is not None:
                self._set_target(self._adaptive.loss(started, now))
            if final:
                # a request that failed its checks at every attempt: retrying was tried, and did not fix it
                retryable = kind != CHECK_FAILED and is_retryable(str(kind), status if type(status) is int else None)
                self._finished(None if retryable else failure_label(kind, status))
        else:
            self._rate_limited.note(False, started)
            self._overloaded.note(False, now)
            self._round_trip_s += _ROUND_TRIP_WEIGHT * (now - started - self._round_trip_s)
            self._pace.answered(now)
            if self._paced is not None and self._pace.rate is None:
                self._paced = None  # the server took a probe above the pace: it lets go
                self._waiting.wake()
            if self._adaptive is not None:
                self._set_target(self._adaptive.success(started, now, self._sending() + 1))
            if final:
                self._finished(None)
        if used is not None and self._paused_for is None:
            reason = self._budget.exceeded(*self._spent())
            if reason is not None:
                self._pause_for("budget", reason)

    def retrying(self, labels: Iterable[str]) -> None:
        """Failed requests (their storm.failure_label) are queued again: the same failures again are no storm."""
        self._storm.expect(labels)

    def _finished(self, failure: str | None) -> None:
        reason = self._storm.finished(failure)
        if reason is not None and self._paused_for is None:
            self._pause_for("storm", reason)

    def _pause_for(self, what: str, reason: str) -> None:
        self._paused_for = what
        self._pause(reason)

    def _set_target(self, target: int | None) -> None:
        if target is None:
            return
        self._apply_workers(target)
        self._waiting.free_slots(target - self._sending())


def _is_limit(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def limits_refusal(requests_per_minute: float, tokens_per_minute: int) -> str | None:
    """Why these rate limits (0: none) cannot be set, in a sentence; None when they can."""
    if not _is_limit(requests_per_minute):
        return f"requests per minute must be a number of 0 or more, not {requests_per_minute!r}"
    if not _is_limit(tokens_per_minute) or tokens_per_minute != int(tokens_per_minute):
        return f"tokens per minute must be a whole number of 0 or more, not {tokens_per_minute!r}"
    return None


def budget_refusal(max_total_tokens: int, max_cost_usd: float, priced: bool) -> str | None:
    """Why these budgets (0: none) cannot be set, in a sentence (`priced`: the job file has prices)."""
    if not _is_limit(max_total_tokens) or max_total_tokens != int(max_total_tokens):
        return f"the token budget must be a whole number of 0 or more, not {max_total_tokens!r}"
    if not _is_limit(max_cost_usd):
        return f"the cost budget must be a number of 0 or more, not {max_cost_usd!r}"
    if max_cost_usd and not priced:
        return (
            "a cost budget needs the prices in the job file "
            "(limits.price_input_per_million_usd and limits.price_output_per_million_usd)"
        )
    return None


def _rebucket(bucket: TokenBucket | None, per_minute: float, now: float) -> TokenBucket | None:
    if not per_minute:
        return None
    if bucket is None:
        return TokenBucket(per_minute, now)
    bucket.set_rate(per_minute, now)
    return bucket

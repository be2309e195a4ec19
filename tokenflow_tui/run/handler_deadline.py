"""A user's handler with a deadline on each attempt ([handler] timeout_s).

A handler that never answers would hold its worker for good, and once every worker held one the job
would stand still while the dashboard said it was running. At the deadline the attempt is cancelled
(the handler's `finally` blocks run) and ends as a failed attempt of kind `timeout`, retried after
the job's backoff like any other until `[retry] max_attempts`.
"""

from __future__ import annotations

import random
from typing import Any

from ..endpoint.deadlines import DeadlineExceeded, Deadlines
from ..endpoint.retry_policy import backoff_s
from ..engine import ActionContinue, TokenFlowRequestTrajectory
from ..engine.error_kinds import TIMEOUT
from ..engine.task import RequestFn
from ..job.model import RetrySection


class HandlerWithDeadline:
    """Calls `handler(trajectory)`; an attempt past `timeout_s` returns a timeout error and a retry instead."""

    def __init__(
        self, handler: RequestFn, timeout_s: float, retry: RetrySection, rng: random.Random | None = None
    ) -> None:
        self._handler = handler
        self._deadlines = Deadlines(timeout_s)
        self._message = f"the handler did not answer within {timeout_s:g} s ([handler] timeout_s)"
        self._retry = retry
        self._rng = rng or random.Random()

    async def __call__(self, trajectory: TokenFlowRequestTrajectory) -> tuple[Any, ...]:
        try:
            with self._deadlines:
                return await self._handler(trajectory)
        except DeadlineExceeded:
            retry = self._retry
            delay_s = backoff_s(trajectory.length(), retry.backoff_base_s, retry.backoff_max_s, self._rng)
            # the payload says why the attempt failed (engine/payload.py); at max_attempts the engine
            # ends the request with it
            payload = {"failed": self._message, "error_kind": TIMEOUT}
            return ActionContinue(trajectory.last().request_params, delay_s), None, payload

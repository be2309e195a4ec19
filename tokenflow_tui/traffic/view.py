"""What traffic control shows a front end: one frozen snapshot of limits, holds, pace and budgets."""

from __future__ import annotations

from dataclasses import dataclass


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

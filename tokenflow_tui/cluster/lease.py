"""The job-wide traffic of a sharded run, kept by one small actor that every shard asks once a second.

Each second a shard tells what it has used and whether it holds dispatch (after 429s), and gets its
lease for the next second: its share of the job's requests and tokens per minute (split evenly among
the shards that still have work), a hold another shard saw, and what the job's budgets leave it. The
limits are leased per second, not per request, so the actor sees a few calls a second however fast
the job goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ShardReport:
    """What a shard tells the lease book each second."""

    number: int
    active: bool  # it has unfinished requests and runs
    held_s: float  # its own hold after 429s, still to go
    held_because: str | None
    tokens: int  # its tokens so far, every run of its output
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A shard's part of the job-wide traffic, for the next second."""

    requests_per_minute: float  # 0: no limit
    tokens_per_minute: int
    hold_s: float  # hold dispatch this long (another shard's hold), 0: none
    hold_because: str | None
    max_total_tokens: int  # its budget: the job's less what the other shards used; 0: none
    max_cost_usd: float


class LeaseBook:
    """The job-wide limits, holds and budgets; `lease` is asked by each shard once a second."""

    def __init__(self, count: int, limits: tuple[float, int], budget: tuple[int, float]) -> None:
        self._count = count
        self._limits = limits
        self._budget = budget
        # the budgets' allowances now: one more of each after a resume that spent it
        self._tokens_allowed, self._cost_allowed = budget
        self._heard_all = False
        self._reports: dict[int, ShardReport] = {}
        self._held_until: dict[int, tuple[float, str | None]] = {}

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> None:
        self._limits = (requests_per_minute, tokens_per_minute)

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> None:
        """New budgets, counted from the start of the job."""
        self._budget = (max_total_tokens, max_cost_usd)
        self._tokens_allowed, self._cost_allowed = max_total_tokens, max_cost_usd

    def grant_more(self) -> None:
        """The job resumes: each budget that is spent allows as much again beyond what the job used."""
        tokens = sum(r.tokens for r in self._reports.values())
        cost = sum(r.cost_usd or 0.0 for r in self._reports.values())
        if self._tokens_allowed and tokens >= self._tokens_allowed:
            self._tokens_allowed = tokens + self._budget[0]
        if self._cost_allowed and cost >= self._cost_allowed:
            self._cost_allowed = cost + self._budget[1]

    def limits(self) -> tuple[tuple[float, int], tuple[int, float]]:
        return self._limits, self._budget

    def lease(self, report: ShardReport) -> Lease:
        now = time.time()  # wall clock: the shards are processes on other machines
        self._reports[report.number] = report
        if not self._heard_all and len(self._reports) == self._count:
            self._heard_all = True
            self.grant_more()  # a new run of a job that stopped on its budget is the user's resume
        if report.held_s > 0:
            self._held_until[report.number] = (now + report.held_s, report.held_because)
        # the asker's share as if it had work (one that has none sends nothing with it); a shard not
        # heard from yet counts as having work, so that the shares never add up to more than the limit
        others_active = sum(1 for r in self._reports.values() if r.active and r.number != report.number)
        share = 1.0 / (1 + others_active + self._count - len(self._reports))
        hold_s, because = 0.0, None
        for number, (until, why) in self._held_until.items():
            if number != report.number and until - now > hold_s:
                hold_s, because = until - now, why
        requests, tokens = self._limits
        max_tokens, max_cost = self._tokens_allowed, self._cost_allowed
        others = [r for r in self._reports.values() if r.number != report.number]
        tokens_left = max(max_tokens - sum(r.tokens for r in others), 1) if max_tokens else 0
        cost_left = max(max_cost - sum(r.cost_usd or 0.0 for r in others), 1e-9) if max_cost else 0.0
        return Lease(
            requests * share if requests else 0.0,
            max(int(tokens * share), 1) if tokens else 0,
            hold_s,
            because,
            tokens_left,
            cost_left,
        )

    def progress(self) -> dict[str, Any]:
        """For the figures: how many shards report, and how many have work."""
        return {"reporting": len(self._reports), "active": sum(1 for r in self._reports.values() if r.active)}

"""Budgets: the job pauses when its tokens or its cost reach what [limits] allows."""

from __future__ import annotations

import math
from dataclasses import dataclass


def format_usd(value: float) -> str:
    """Dollars to four significant digits: $0.0032, $1.235, $5.00, $12.35, $1,235; never $0.00 for a spend."""
    if abs(value) >= 999.95:
        return f"${value:,.0f}"
    if value == 0:
        return "$0.00"
    digits = max(2, 3 - math.floor(math.log10(abs(value))))
    text = f"{value:.{digits}f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


@dataclass(frozen=True, slots=True)
class Prices:
    """US dollars per million tokens."""

    input: float
    output: float

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


class Budget:
    """Token and cost allowances over the whole job (every run of its output).

    Each allowance starts at its limit. When the job's spending reaches it, `exceeded` says so
    in a sentence; `grant_more` (on a resume, or a new run of a job that stopped on its budget)
    then allows one more budget of the same size beyond what was spent. A limit of 0 is none.
    """

    def __init__(self, max_total_tokens: int, max_cost_usd: float, prices: Prices | None) -> None:
        self.max_total_tokens = max_total_tokens
        self.max_cost_usd = max_cost_usd
        self.prices = prices
        self.tokens_allowed = max_total_tokens
        self.cost_allowed = max_cost_usd

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return self.prices.cost_usd(prompt_tokens, completion_tokens) if self.prices is not None else None

    def exceeded(self, prompt_tokens: int, completion_tokens: int) -> str | None:
        """Why the job must pause, when an allowance is spent; None otherwise."""
        tokens = prompt_tokens + completion_tokens
        if self.tokens_allowed and tokens >= self.tokens_allowed:
            return (
                f"the token budget is spent: {tokens:,} tokens used of {self.tokens_allowed:,} allowed "
                "(limits.max_total_tokens); resume to allow as many again"
            )
        cost = self.cost_usd(prompt_tokens, completion_tokens)
        if self.cost_allowed and cost is not None and cost >= self.cost_allowed:
            return (
                f"the cost budget is spent: {format_usd(cost)} used of {format_usd(self.cost_allowed)} allowed "
                "(limits.max_cost_usd); resume to allow as much again"
            )
        return None

    def grant_more(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Allow one more budget beyond what was spent, for each allowance that is spent."""
        tokens = prompt_tokens + completion_tokens
        if self.tokens_allowed and tokens >= self.tokens_allowed:
            self.tokens_allowed = tokens + self.max_total_tokens
        cost = self.cost_usd(prompt_tokens, completion_tokens)
        if self.cost_allowed and cost is not None and cost >= self.cost_allowed:
            self.cost_allowed = cost + self.max_cost_usd

    def set_limits(self, max_total_tokens: int, max_cost_usd: float) -> None:
        """New limits from the dashboard: they count from the start of the job, as in the job file."""
        self.max_total_tokens = self.tokens_allowed = max_total_tokens
        self.max_cost_usd = self.cost_allowed = max_cost_usd

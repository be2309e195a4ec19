"""The rules panel's lines: each [checks] check and [[retry.rules]] rule of the job with what it did."""

from __future__ import annotations

from ..job.model import Job
from ..store.rule_figures import RuleFigure, RuleFigures, check_key, rule_key
from ..traffic.budget import Prices
from .contract import RuleLine


def rule_lines(job: Job, figures: RuleFigures) -> tuple[RuleLine, ...]:
    """A line per check (in checking order), then per rule (in the job file's order); zeros for those idle."""
    limits = job.limits
    prices = None
    if limits.price_input_per_million_usd is not None and limits.price_output_per_million_usd is not None:
        prices = Prices(limits.price_input_per_million_usd, limits.price_output_per_million_usd)
    named = [(f"check {name}", check_key(name), name) for name in (job.checks.names if job.checks else ())]
    named += [(f"rule {rule.index + 1}", rule_key(rule.index), rule.when) for rule in job.retry.rules]
    lines = []
    for name, key, label in named:
        figure = figures.by_key.get(key) or RuleFigure(label)
        cost = prices.cost_usd(figure.prompt_tokens, figure.completion_tokens) if prices is not None else None
        tokens = figure.prompt_tokens + figure.completion_tokens
        lines.append(RuleLine(name, label, figure.caught, figure.rescued, tokens, cost))
    return tuple(lines)

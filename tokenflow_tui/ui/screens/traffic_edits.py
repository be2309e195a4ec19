"""What the keys l (rate limits) and b (budgets) ask, and what the app says once it is done."""

from __future__ import annotations

from collections.abc import Sequence

from ...run.contract import TrafficView
from .amounts import Amount, AmountsDialog, Apply


def limits_dialog(view: TrafficView, apply: Apply) -> AmountsDialog:
    return AmountsDialog(
        "Rate limits, shared by all workers",
        [
            Amount("requests/min", view.requests_per_minute),
            Amount("tokens/min", view.tokens_per_minute, whole=True),
        ],
        "0 means no limit · enter applies · escape cancels",
        apply,
    )


def budget_dialog(view: TrafficView, apply: Apply) -> AmountsDialog:
    used = f"{view.tokens_used:,} tokens"
    if view.cost_usd is not None:
        used += f" · ${view.cost_usd:,.2f}"
    return AmountsDialog(
        "Budgets: the job pauses when one is spent",
        [
            Amount("max total tokens", view.max_total_tokens, whole=True),
            Amount("max cost (USD)", view.max_cost_usd, dollars=True),
        ],
        f"counted from the start of the job, {used} so far · 0 means none · enter applies · escape cancels",
        apply,
    )


def change_note(what: str, amounts: Sequence[Amount], values: Sequence[float]) -> str:
    """'limits: requests/min none → 600 · tokens/min none (unchanged)'."""
    parts = []
    for amount, value in zip(amounts, values):
        old, new = amount.show(amount.value), amount.show(value)
        parts.append(f"{amount.name} {old} → {new}" if old != new else f"{amount.name} {new} (unchanged)")
    return f"{what}: " + " · ".join(parts)


def spent_budgets(view: TrafficView) -> list[str]:
    """The budgets spent now, each in a few words: 'the token budget (1,200 of 1,000 tokens)'."""
    spent = []
    if view.max_total_tokens and view.tokens_used >= view.max_total_tokens:
        spent.append(f"the token budget ({view.tokens_used:,} of {view.max_total_tokens:,} tokens)")
    cost = view.cost_usd
    if view.max_cost_usd and cost is not None and cost >= view.max_cost_usd:
        spent.append(f"the cost budget (${cost:,.2f} of ${view.max_cost_usd:,.2f})")
    return spent


def resume_note(view: TrafficView) -> str:
    """What p says as it resumes a paused job: with a spent budget, that the job will pause again."""
    spent = spent_budgets(view)
    if not spent:
        return "resuming"
    # the runner grants one more budget of the same size beyond what was spent (Budget.grant_more)
    return (
        f"resuming: {' and '.join(spent)} {'is' if len(spent) == 1 else 'are'} spent, so the job gets "
        "as much again and pauses when that is spent too; b raises or clears the budget"
    )

"""The shards' snapshots and rows combined into the one run a front end shows."""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..engine import StatsSnapshot
from ..engine.stats import LatencyHistogram
from ..run.contract import (
    ChartPoint,
    EndpointView,
    RequestRow,
    RuleLine,
    RunEvent,
    RunSnapshot,
    RunState,
    SearchStatus,
    SortStatus,
    TrafficView,
)

_SUMMED_STATS = (
    *("done", "failed", "in_flight", "queued", "attempts", "retries", "workers", "target_workers"),
    *("rate_1s", "rate_10s", "rate_60s", "rate_avg", "waiting"),
)
# one shard in each state makes the job's: the first that any shard is in, in this order
_STATE_ORDER: tuple[RunState, ...] = ("stopping", "pausing", "running", "starting", "paused", "done")

# a runner searches and sorts its own rows; across shards the table keeps the input order
NOT_ACROSS_SHARDS = "not available yet for a run across shards"


class NoSearchAcrossShards:
    """The contract's search and sort for a run across shards: they say, in the table, that there are none."""

    _search_query = ""

    def sort_status(self, sort: str) -> SortStatus:
        return SortStatus(sort, ready=sort == "input", unavailable="" if sort == "input" else NOT_ACROSS_SHARDS)

    def search(self, query: str) -> SearchStatus:
        self._search_query = query
        return self.search_status()

    def search_status(self) -> SearchStatus:
        query = self._search_query
        return SearchStatus(query, unavailable=NOT_ACROSS_SHARDS if query else "")

    def find(self, position: int, direction: int, row_filter: str = "all", sort: str = "input") -> int | None:
        return None


def merge_stats(parts: Sequence[StatsSnapshot], total: int) -> StatsSnapshot:
    """Counts and rates summed; the elapsed time and the latency percentiles of the slowest shard."""
    summed = {name: sum(getattr(s, name) for s in parts) for name in _SUMMED_STATS}
    return StatsSnapshot(
        state=_engine_state([s.state for s in parts]),
        total=total,
        elapsed_s=max((s.elapsed_s for s in parts), default=0.0),
        latency_p50_s=_highest(s.latency_p50_s for s in parts),
        latency_p95_s=_highest(s.latency_p95_s for s in parts),
        latency_p99_s=_highest(s.latency_p99_s for s in parts),
        **summed,
    )


def merge_state(states: Sequence[str]) -> RunState:
    """The job's state: the first that any shard is in, in _STATE_ORDER."""
    for state in _STATE_ORDER:
        if state in states:
            return state
    return "starting"


def _engine_state(states: Sequence[str]) -> str:
    """The engine's state names (idle, running, stopping, paused, done): the first any shard is in."""
    for state in ("stopping", "running", "idle", "paused", "done"):
        if state in states:
            return state
    return "idle"


def merge_history(parts: Sequence[Sequence[ChartPoint]]) -> list[ChartPoint]:
    """The charts' seconds summed over the shards (each counts running time from its own start)."""
    by_second: dict[int, list[ChartPoint]] = {}
    for history in parts:
        for point in history:
            by_second.setdefault(point.t, []).append(point)
    merged = []
    for t in sorted(by_second):
        points = by_second[t]
        errors: Counter[str] = Counter()
        for point in points:
            errors.update(point.errors)
        merged.append(
            ChartPoint(
                t,
                sum(p.finished for p in points),
                sum(p.tokens for p in points),
                dict(errors),
                _highest(p.latency_p50_ms for p in points),
                _highest(p.latency_p95_ms for p in points),
            )
        )
    return merged


def merge_traffic(parts: Sequence[TrafficView], limits: tuple[float, int], budget: tuple[int, float]) -> TrafficView:
    """The job-wide limits and budgets (the lease book's), the longest hold, the shards' counts summed."""
    held = max(parts, key=lambda view: view.held_s, default=TrafficView())
    targets = [view.target_workers for view in parts if view.target_workers is not None]
    costs = [view.cost_usd for view in parts if view.cost_usd is not None]
    paces = [view.pace_per_minute for view in parts]
    return TrafficView(
        requests_per_minute=limits[0],
        tokens_per_minute=limits[1],
        held_s=held.held_s,
        held_because=held.held_because,
        holds=max((view.holds for view in parts), default=0),  # a hold seen by one shard holds them all
        adaptive=any(view.adaptive for view in parts),
        target_workers=sum(targets) if targets else None,
        workers_min=_summed(view.workers_min for view in parts),
        workers_max=_summed(view.workers_max for view in parts),
        cuts=sum(view.cuts for view in parts),
        tokens_used=sum(view.tokens_used for view in parts),
        max_total_tokens=budget[0],
        cost_usd=sum(costs) if costs else None,
        max_cost_usd=budget[1],
        pace_per_minute=sum(paces) if all(paces) and paces else 0.0,
        sent=sum(view.sent for view in parts),
    )


def merge_snapshots(
    parts: Sequence[RunSnapshot],
    *,
    job_name: str,
    output_dir: str,
    total: int,
    reason: str | None,
    limits: tuple[float, int],
    budget: tuple[int, float],
    events: Sequence[RunEvent],
    latency: Sequence[object] = (),
) -> RunSnapshot:
    """One snapshot of the whole job from the shards' last ones; `latency`: their histograms' data
    (`JobRunner.latency_data`), whose merge gives the job's percentiles as `tokenflow report` counts them."""
    stats = merge_stats([p.stats for p in parts], total)
    if latency:
        p50, p95, p99 = merge_latency(latency)
        stats = dataclasses.replace(stats, latency_p50_s=p50, latency_p95_s=p95, latency_p99_s=p99)
    state = merge_state([p.state for p in parts]) if parts else "starting"
    errors: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for part in parts:
        errors.update(part.errors_by_kind)
        failed.update(part.failed_by_kind)
    costs = [p.cost_usd for p in parts if p.cost_usd is not None]
    per_minute = [p.cost_per_min_usd for p in parts if p.cost_per_min_usd is not None]
    projected = [p.cost_projected_usd for p in parts if p.cost_projected_usd is not None]
    saved = [p.saved_at for p in parts]
    return RunSnapshot(
        job_name=job_name,
        output_dir=output_dir,
        state=state,
        reason=reason or next((p.reason for p in parts if p.reason), None),
        stats=stats,
        prompt_tokens=sum(p.prompt_tokens for p in parts),
        completion_tokens=sum(p.completion_tokens for p in parts),
        tokens_per_s_now=sum(p.tokens_per_s_now for p in parts),
        tokens_per_s_avg=sum(p.tokens_per_s_avg for p in parts),
        errors_by_kind=dict(errors),
        failed_by_kind=dict(failed),
        history=merge_history([p.history for p in parts]),
        # the oldest of the shards' last saves: everything before it is saved
        saved_at=None if not saved or None in saved else min(s for s in saved if s is not None),
        traffic=merge_traffic([p.traffic for p in parts], limits, budget),
        ttft_p50_s=_highest(p.ttft_p50_s for p in parts),
        ttft_p95_s=_highest(p.ttft_p95_s for p in parts),
        ttft_p99_s=_highest(p.ttft_p99_s for p in parts),
        unsaved=sum(p.unsaved for p in parts),
        retried=sum(p.retried for p in parts),
        longest_in_flight_s=_highest(p.longest_in_flight_s for p in parts),
        cost_usd=sum(costs) if costs else None,
        cost_per_min_usd=sum(per_minute) if per_minute else None,
        cost_projected_usd=sum(projected) if projected else None,
        events=events,
        results_at=f"{output_dir}/shard-*/results.jsonl",
        rules=merge_rules([p.rules for p in parts]),
        endpoints=merge_endpoints([p.endpoints for p in parts]),
    )


def merge_latency(datas: Sequence[object]) -> tuple[float | None, ...]:
    """p50, p95 and p99 of the shards' latency histograms together."""
    merged = LatencyHistogram()
    for data in datas:
        merged.merge(LatencyHistogram.from_data(data))
    return merged.percentiles((50, 95, 99))


def merge_rules(parts: Sequence[Sequence[RuleLine]]) -> tuple[RuleLine, ...]:
    """Each check's and rule's figures summed over the shards (every shard has the same checks and rules)."""
    if not parts:
        return ()
    merged = []
    for lines in zip(*parts):
        costs = [line.cost_usd for line in lines if line.cost_usd is not None]
        first = lines[0]
        merged.append(
            RuleLine(
                first.name,
                first.label,
                sum(line.caught for line in lines),
                sum(line.rescued for line in lines),
                sum(line.tokens for line in lines),
                sum(costs) if costs else None,
            )
        )
    return tuple(merged)


def merge_endpoints(parts: Sequence[Sequence[EndpointView]]) -> tuple[EndpointView, ...]:
    """Each of [[endpoints]] over the shards: counts and rates summed, the state of the shard that is worst off."""
    if not parts:
        return ()
    worst = {"sending": 0, "held": 1, "paused": 2}
    merged = []
    for views in zip(*parts):
        view = max(views, key=lambda view: worst.get(view.state, 0))
        merged.append(
            EndpointView(
                view.name,
                view.state,
                view.reason,
                view.weight,
                sum(v.attempts for v in views),
                sum(v.errors for v in views),
                sum(v.done for v in views),
                sum(v.rate_per_s for v in views),
                view.requests_per_minute,
                view.tokens_per_minute,
                sum(v.pace_per_minute for v in views),
            )
        )
    return tuple(merged)


def merge_all_rows(parts: Sequence[Sequence[RequestRow]], count: int, start: int) -> list[RequestRow]:
    """Rows `start`… of the "all" filter: each shard's table has every index; index i is shard i % count's."""
    rows = []
    for offset, row in enumerate(parts[0] if parts else ()):
        index = start + offset
        shard_rows = parts[index % count]
        rows.append(shard_rows[offset] if offset < len(shard_rows) else row)
    return rows


def merge_filtered_rows(parts: Sequence[Sequence[RequestRow]], start: int, stop: int) -> list[RequestRow]:
    """Rows `start`…`stop` of a filter, from each shard's rows 0…`stop` of it (each sorted by index)."""
    merged = heapq.merge(*parts, key=lambda row: row.index)
    return [row for n, row in enumerate(merged) if start <= n < stop]


def merge_groups(parts: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for part in parts:
        for kind, indexes in part.items():
            groups.setdefault(kind, []).extend(indexes)
    return {kind: sorted(indexes) for kind, indexes in groups.items()}


def _highest(values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _summed(values: Any) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None

"""The four panels of numbers under the progress bar: requests, speed, latency, tokens."""

from __future__ import annotations

from textual.content import Content

from ...run.contract import RunSnapshot, format_usd
from ..formatting import DASH, MUTED, compact, count, latency


def _rows(rows: list[tuple[str, str | Content]], label_width: int) -> Content:
    return Content("\n").join(Content.assemble((label.ljust(label_width), MUTED), value) for label, value in rows)


def _right(text: str, width: int, style: str = "bold") -> Content:
    return Content.styled(text.rjust(width), style)


def counts_content(snapshot: RunSnapshot) -> Content:
    stats = snapshot.stats
    return _rows(
        [
            ("done", _right(count(stats.done), 12, "bold $success")),
            ("failed", _right(count(stats.failed), 12, "bold $error" if stats.failed else "bold")),
            ("in flight", _right(count(stats.in_flight), 12)),
            # held back by a limit, a hold or the pace: a line of its own only while there are some
            *([("waiting", _right(count(stats.waiting), 12, "bold $warning"))] if stats.waiting else []),
            ("queued", _right(count(stats.queued), 12)),
            # requests with two attempts or more, over the whole job (as `tokenflow report` counts them)
            ("retried", _right(count(snapshot.retried), 12, "bold $warning" if snapshot.retried else "bold")),
        ],
        10,
    )


# nothing is in flight in these states, so there is no rate "now" (what the run reports then is the
# tail of a window that ended with the last request)
_IDLE = ("paused", "done")


def workers_text(snapshot: RunSnapshot) -> str:
    """'64', '64 → 74' while the count moves to a new target, '12 finishing' while a pause waits for
    the requests in flight, '64 on resume' while paused (the target, not a move towards it)."""
    stats = snapshot.stats
    if snapshot.state == "paused":
        return f"{stats.target_workers:,} on resume"
    if snapshot.state == "pausing":
        return f"{stats.workers:,} finishing"
    if stats.target_workers != stats.workers and snapshot.state != "done":
        return f"{stats.workers:,} → {stats.target_workers:,}"
    return f"{stats.workers:,}"


def speed_content(snapshot: RunSnapshot, lag_p99_ms: float | None) -> Content:
    stats = snapshot.stats
    workers = workers_text(snapshot)
    lag = DASH if lag_p99_ms is None else f"{lag_p99_ms:.0f} ms"
    idle = snapshot.state in _IDLE
    return _rows(
        [
            ("", Content.assemble(("now".rjust(9), MUTED), ("avg".rjust(9), MUTED))),
            (
                "requests/s",
                Content.assemble(
                    _right(DASH if idle else compact(stats.rate_10s), 9), _right(compact(stats.rate_avg), 9)
                ),
            ),
            (
                "tokens/s",
                Content.assemble(
                    _right(DASH if idle else compact(snapshot.tokens_per_s_now), 9),
                    _right(compact(snapshot.tokens_per_s_avg), 9),
                ),
            ),
            ("workers", _right(workers, 18)),
            ("loop lag", Content.assemble(("p99".rjust(9), MUTED), _right(lag, 9))),
        ],
        11,
    )


def latency_content(snapshot: RunSnapshot) -> Content:
    stats = snapshot.stats
    rows: list[tuple[str, str | Content]] = [
        ("p50", _right(latency(stats.latency_p50_s), 10)),
        ("p95", _right(latency(stats.latency_p95_s), 10)),
        ("p99", _right(latency(stats.latency_p99_s), 10)),
        ("attempts", _right(count(stats.attempts), 10)),
    ]
    if snapshot.ttft_p50_s is not None:
        rows.append(("ttft 50/95", _right(ttft_pair(snapshot.ttft_p50_s, snapshot.ttft_p95_s), 10)))
    return _rows(rows, 11)


def ttft_pair(p50_s: float, p95_s: float | None) -> str:
    """'120/340 ms', '1.2/3.4 s': two percentiles of the time to first token in one unit, to fit one line."""
    top = p95_s if p95_s is not None else p50_s
    if top < 1:
        return f"{p50_s * 1000:.0f}/{top * 1000:.0f} ms"
    if top < 60:
        return f"{p50_s:.1f}/{top:.1f} s"
    return f"{p50_s / 60:.1f}/{top / 60:.1f} min"


def tokens_content(snapshot: RunSnapshot) -> Content:
    prompt, completion = snapshot.prompt_tokens, snapshot.completion_tokens
    rows: list[tuple[str, str | Content]] = [
        ("prompt", _right(count(prompt), 14)),
        ("completion", _right(count(completion), 14)),
        ("total", _right(count(prompt + completion), 14)),
    ]
    if snapshot.cost_usd is not None:  # prices are set in [limits]
        per_minute = snapshot.cost_per_min_usd
        rows.append(
            (
                "cost",
                Content.assemble(
                    _right(format_usd(snapshot.cost_usd), 14),
                    ("" if per_minute is None else f"  {format_usd(per_minute)}/min", MUTED),
                ),
            )
        )
        projected = snapshot.cost_projected_usd
        rows.append(("at the end", _right(DASH if projected is None else format_usd(projected), 14)))
    return _rows(rows, 11)

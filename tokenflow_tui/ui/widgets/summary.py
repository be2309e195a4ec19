"""What the dashboard shows once the run has returned: the outcome and where the results are."""

from __future__ import annotations

from textual.content import Content

from ...engine import StatsSnapshot
from ...run.contract import RunSnapshot, format_usd
from ...run.durations import duration
from ..formatting import MUTED, count, error_label, error_style, latency, ordered_kinds

_LABEL = 10  # "failures  ", "tokens    "…


def summary_content(snapshot: RunSnapshot, exit_code: int, error: str | None, width: int = 0) -> Content:
    """The summary, its list of failures fitted to `width` cells (0: not known yet, all of it)."""
    stats = snapshot.stats
    if error is not None:
        outcome = Content.styled(f"The run stopped on an error: {error}", "bold $error")
    elif exit_code == 0:
        outcome = Content.styled("Every request has a final record.", "bold $success")
    else:
        outcome = Content.styled("The run ended before every request was finished.", "bold $warning")
    failures = [
        Content.assemble((error_label(kind), error_style(kind)), f" {count(n)}")
        for kind in ordered_kinds(snapshot.failed_by_kind)
        if (n := snapshot.failed_by_kind[kind])
    ]
    tokens = snapshot.prompt_tokens + snapshot.completion_tokens
    lines = [
        Content.assemble(outcome, (f"   exit code {exit_code} · ran {duration(stats.elapsed_s)}", MUTED)),
        Content.assemble(
            ("done ", MUTED),
            (count(stats.done), "bold $success"),
            ("   failed ", MUTED),
            (count(stats.failed), "bold $error" if stats.failed else "bold"),
            ("   of ", MUTED),
            (count(stats.total), "bold"),
            ("   retried ", MUTED),
            (count(snapshot.retried), "bold"),
        ),
        Content.assemble(("failures  ", MUTED), _fitted(failures, width - _LABEL) if failures else "none"),
        Content.assemble(
            ("tokens    ", MUTED),
            (count(tokens), "bold"),
            f" ({count(snapshot.prompt_tokens)} prompt + {count(snapshot.completion_tokens)} completion)",
            *(() if snapshot.cost_usd is None else ((" · cost ", MUTED), (format_usd(snapshot.cost_usd), "bold"))),
        ),
        Content.assemble(("latency   ", MUTED), _latencies(stats)),
        Content.assemble(("results   ", MUTED), (snapshot.results_path, "bold")),
        Content.styled("q quits · f browses the failed requests · enter shows a request's trajectory", MUTED),
    ]
    return Content("\n").join(lines)


def _latencies(stats: StatsSnapshot) -> str:
    if stats.latency_p50_s is None:
        return "no timed attempts"
    return (
        f"p50 {latency(stats.latency_p50_s)} · p95 {latency(stats.latency_p95_s)} · p99 {latency(stats.latency_p99_s)}"
    )


def _fitted(items: list[Content], width: int) -> Content:
    """The items joined with " · ", or as many as fit and how many more: the panel cuts a longer line."""
    joined = Content(" · ").join(items)
    if width <= 0 or joined.cell_length <= width:
        return joined
    for shown in range(len(items) - 1, 0, -1):
        line = Content.assemble(Content(" · ").join(items[:shown]), (f" · {len(items) - shown} more (f)", MUTED))
        if line.cell_length <= width:
            return line
    return joined.truncate(width, ellipsis=True)

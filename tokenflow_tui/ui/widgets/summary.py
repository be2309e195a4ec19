"""What the dashboard shows once the run has returned: the outcome and where the results are."""
from __future__ import annotations

from textual.content import Content

from ...jobs.view import RunSnapshot
from ..formatting import MUTED, count, duration, error_label, error_style, latency, ordered_kinds
from .status import results_path


def summary_content(snapshot: RunSnapshot, exit_code: int, error: str | None) -> Content:
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
            ("done ", MUTED), (count(stats.done), "bold $success"),
            ("   failed ", MUTED), (count(stats.failed), "bold $error" if stats.failed else "bold"),
            ("   of ", MUTED), (count(stats.total), "bold"),
            ("   retries ", MUTED), (count(stats.retries), "bold"),
        ),
        Content.assemble(("failures  ", MUTED), Content(" · ").join(failures) if failures else "none"),
        Content.assemble(
            ("tokens    ", MUTED), (count(tokens), "bold"),
            f" ({count(snapshot.prompt_tokens)} prompt + {count(snapshot.completion_tokens)} completion)",
        ),
        Content.assemble(
            ("latency   ", MUTED),
            f"p50 {latency(stats.latency_p50_s)} · p95 {latency(stats.latency_p95_s)} · "
            f"p99 {latency(stats.latency_p99_s)}",
        ),
        Content.assemble(("results   ", MUTED), (results_path(snapshot), "bold")),
        Content.styled("q quits · f browses the failed requests · enter shows a request's trajectory",
                       MUTED),
    ]
    return Content("\n").join(lines)

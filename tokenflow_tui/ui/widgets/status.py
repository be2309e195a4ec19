"""The top of the dashboard: job name, state, times, and the progress bar."""

from __future__ import annotations

import textwrap
from datetime import tzinfo

from textual.content import Content
from textual.widget import Widget

from ...engine import StatsSnapshot
from ...run.contract import RunSnapshot
from ...run.durations import duration, eta_text
from ..formatting import MUTED, clock_time, count
from .panel import LivePanel

STATE_STYLES = {
    "starting": "bold $primary",
    "running": "bold $success",
    "pausing": "bold $warning",
    "paused": "bold $warning",
    "stopping": "bold $error",
    "done": "bold $accent",
}
_PARTIAL = "▏▎▍▌▋▊▉"  # one to seven eighths of a cell


class RunHeader(LivePanel):
    """Job name and state, elapsed and ETA, last save; below, why the job stopped by itself."""

    def show_snapshot(self, snapshot: RunSnapshot, now: float, tz: tzinfo | None) -> None:
        stats = snapshot.stats
        state = snapshot.state
        if snapshot.saved_at is None:
            saved = Content.styled("not saved yet", MUTED)
        else:
            ago = duration(max(0.0, now - snapshot.saved_at))
            saved = Content.assemble("saved ", (clock_time(snapshot.saved_at, tz), "bold"), f" ({ago} ago)")
        line = Content.assemble(
            (snapshot.job_name, "bold"),
            "  ",
            (f" {state.upper()} ", f"{STATE_STYLES.get(state, 'bold')} reverse"),
            "   elapsed ",
            (duration(stats.elapsed_s), "bold"),
            *(() if state == "done" else ("   ETA ", (eta_text(state, stats, snapshot.longest_in_flight_s), "bold"))),
            "   ",
            saved,
        )
        if snapshot.reason:
            # wrapped, not cut: the end of a reason is often what to do ("… then resume")
            width = self.content_size.width or 80
            below = [
                Content.styled(text, "bold $warning")
                for text in textwrap.wrap(f"⚠ {snapshot.reason}", width, subsequent_indent="  ")
            ]
        else:
            below = [Content.styled(f"results → {snapshot.results_path}", MUTED)]
        self.set_content(Content("\n").join([line, *below]))


class RunProgress(Widget):
    """Finished requests of the total: done in green, failed in red."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._numbers: tuple[int, int, int | None] = (0, 0, None)

    def show_stats(self, stats: StatsSnapshot) -> None:
        numbers = (stats.done, stats.failed, stats.total)
        if numbers != self._numbers:
            self._numbers = numbers
            self.refresh()

    def render(self) -> Content:
        done, failed, total = self._numbers
        finished = done + failed
        if total is None:
            return Content(f"{count(finished)} finished · total not known yet")
        label = f" {count(finished)} / {count(total)}  {finished / total if total else 1:6.1%}"
        width = max(0, self.size.width - len(label))
        # in eighths of a cell, so the bar moves smoothly at a million requests
        done_8 = done * width * 8 // max(total, 1)
        finished_8 = finished * width * 8 // max(total, 1)
        full_done, full_finished = done_8 // 8, finished_8 // 8
        eighths = finished_8 % 8
        partial = _PARTIAL[eighths - 1] if eighths and full_finished < width else ""
        rest = width - full_finished - len(partial)
        return Content.assemble(
            ("█" * full_done, "$success"),
            ("█" * (full_finished - full_done), "$error"),
            (partial, "$success" if done_8 >= finished_8 else "$error"),
            ("─" * rest, "$panel-lighten-2"),
            (label, "bold"),
        )

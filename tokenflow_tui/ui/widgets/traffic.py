"""Traffic control at a glance: rate limits, the hold after 429s, pace, adaptive target, budgets, the
server's allowance, and with [[endpoints]] one line per endpoint (its state, rate, counts, limit).
Only what carries information is shown; with nothing to show the panel hides."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content

from ...run.contract import EndpointView, TrafficView, format_usd
from ..formatting import MUTED, compact, plural, setting
from .panel import LivePanel

_GAP = "   "  # between two topics on one line
_BORDER_ROWS = 2
_GUTTER = 4  # border and padding, left and right
# when the topics take more lines than this (a narrow terminal), they are said in fewer words
_FOLDED_LINES = 4


def _limits(view: TrafficView, short: bool) -> Content | None:
    if not (view.requests_per_minute or view.tokens_per_minute):
        return None
    return Content.assemble(
        ("limits ", MUTED),
        (setting(view.requests_per_minute), "bold"),
        ("/min · " if short else " requests/min · ", MUTED),
        (setting(view.tokens_per_minute), "bold"),
        (" tokens/min", MUTED),
    )


def _hold(view: TrafficView, short: bool) -> Content | None:
    if view.held_because is not None:
        if short:
            return Content.assemble(
                ("held ", MUTED), (f"{view.held_s:.1f} s", "bold $warning"), (f" ({plural(view.holds, 'hold')})", MUTED)
            )
        return Content.assemble(
            ("held ", MUTED),
            (f"{view.held_s:.1f} s", "bold $warning"),
            (f": {view.held_because}", "$warning"),
            (f" · {plural(view.holds, 'hold')} so far", MUTED),
        )
    if view.holds:
        # the line stays once there was a hold, so the layout does not jump with every 429 storm
        return Content.assemble(
            ("holds ", MUTED), (f"{view.holds:,}", "bold"), ("" if short else " · not held now", MUTED)
        )
    return None


def _pace(view: TrafficView, short: bool) -> Content | None:
    if not view.pace_per_minute:
        return None
    return Content.assemble(
        ("paced ", MUTED),
        (compact(view.pace_per_minute), "bold"),
        ("/min" if short else " requests/min (what the server accepted)", MUTED),
    )


def _reset(view: TrafficView, short: bool) -> Content | None:
    if not (view.pace_per_minute or view.held_because):
        return None
    # the key that forgets the pace and holds (and the limits the server's 429s implied)
    if short:
        return Content.assemble(("t", "bold"), (" resets", MUTED))
    return Content.assemble(("press ", MUTED), ("t", "bold"), (" to reset", MUTED))


def _adaptive(view: TrafficView, short: bool) -> Content | None:
    if not view.adaptive or view.target_workers is None:
        return None
    cuts = Content.assemble(" · ", (f"{view.cuts:,}", "bold"), (" cut" if view.cuts == 1 else " cuts", MUTED))
    return Content.assemble(
        ("adaptive " if short else "adaptive target ", MUTED),
        (f"{view.target_workers:,}", "bold"),
        (f"{'' if short else ' workers'} ({view.workers_min:,}–{view.workers_max:,})", MUTED),
        cuts,
    )


def _budget(view: TrafficView, short: bool) -> Content | None:
    parts = []
    if view.max_total_tokens:
        spent = view.tokens_used >= view.max_total_tokens
        parts.append(
            Content.assemble(
                (compact(view.tokens_used), "bold $warning" if spent else "bold"),
                (f" / {compact(view.max_total_tokens)} tokens", MUTED),
            )
        )
    if view.max_cost_usd:
        cost = view.cost_usd or 0.0
        spent = cost >= view.max_cost_usd
        parts.append(
            Content.assemble(
                (format_usd(cost), "bold $warning" if spent else "bold"),
                (f" / {format_usd(view.max_cost_usd)}", MUTED),
            )
        )
    if not parts:
        return None
    return Content.assemble(("budget ", MUTED), Content(" · ").join(parts))


def _server(view: TrafficView, short: bool) -> Content | None:
    parts = []
    if view.remaining_requests is not None:
        parts.append(Content.assemble((compact(view.remaining_requests), "bold"), (" requests", MUTED)))
    if view.remaining_tokens is not None:
        parts.append(Content.assemble((compact(view.remaining_tokens), "bold"), (" tokens", MUTED)))
    if not parts:
        return None
    return Content.assemble(("server allows ", MUTED), Content(" · ").join(parts), ("" if short else " more", MUTED))


def traffic_topics(view: TrafficView, *, short: bool = False) -> list[Content]:
    """What there is to say, most important first: limits, hold, pace (and the key that resets them),
    adaptive, budget, server; `short` in fewer words (the hold without its reason)."""
    topics = (_limits, _hold, _pace, _reset, _adaptive, _budget, _server)
    return [topic for said in topics if (topic := said(view, short)) is not None]


_STATE_STYLES = {"sending": "bold $success", "held": "bold $warning", "paused": "bold $error"}


def endpoint_line(view: EndpointView, name_width: int = 0) -> Content:
    """One endpoint: `endpoint NAME state · rate · attempts, failed, done · its limit, pace, weight · why`."""
    parts = [
        Content.assemble((f"{view.rate_per_s:,.1f}", "bold"), ("/s", MUTED)),
        Content.assemble(
            (f"{view.attempts:,}", "bold"),
            (" attempts, ", MUTED),
            (f"{view.errors:,}", "bold $error" if view.errors else "bold"),
            (" failed, ", MUTED),
            (f"{view.done:,}", "bold"),
            (" done", MUTED),
        ),
    ]
    if view.requests_per_minute or view.tokens_per_minute:
        limits = []
        if view.requests_per_minute:
            limits.append(Content.assemble((setting(view.requests_per_minute), "bold"), ("/min", MUTED)))
        if view.tokens_per_minute:
            limits.append(Content.assemble((compact(view.tokens_per_minute), "bold"), (" tokens/min", MUTED)))
        parts.append(Content.assemble(("limit ", MUTED), Content(" · ").join(limits)))
    if view.pace_per_minute:
        parts.append(Content.assemble(("paced ", MUTED), (compact(view.pace_per_minute), "bold"), ("/min", MUTED)))
    parts.append(Content.assemble(("weight ", MUTED), (f"{view.weight:g}", "bold")))
    line = Content.assemble(
        ("endpoint ", MUTED),
        (f"{view.name:<{name_width}}", "bold"),
        " ",
        (f"{view.state:<7}", _STATE_STYLES.get(view.state, "bold")),
        " ",
        Content(" · ").join(parts),
    )
    if view.reason:
        line = Content.assemble(line, (f" · {view.reason}", "$warning" if view.state == "held" else "$error"))
    return line


def flow(topics: list[Content], width: int) -> list[Content]:
    """The topics on lines of `width` cells, as many on a line as fit; a topic wider than a line is cut."""
    lines: list[Content] = []
    line: Content | None = None
    for topic in topics:
        if line is not None and line.cell_length + len(_GAP) + topic.cell_length <= width:
            line = Content.assemble(line, _GAP, topic)
            continue
        if line is not None:
            lines.append(line)
        line = topic.truncate(max(width, 1), ellipsis=True)
    if line is not None:
        lines.append(line)
    return lines


class TrafficPanel(LivePanel):
    """The topics of the run's traffic control, flowed into the panel's width; hidden when there are none.

    Its height follows its lines; it changes only when a topic appears (a first hold, a pace) or the
    terminal is resized (taken on the next refresh), so the screen is laid out again rarely.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._height_lines = 0  # lines it is sized for; none until the first refresh (the stylesheet hides it)

    def show_traffic(self, view: TrafficView, endpoints: Sequence[EndpointView] = ()) -> None:
        # the panel spans the screen, hidden or not: its border and padding take four columns
        width = max(1, self.screen.size.width - _GUTTER)
        lines = flow(traffic_topics(view), width)
        if len(lines) > _FOLDED_LINES:
            lines = flow(traffic_topics(view, short=True), width)[:_FOLDED_LINES]
        name_width = max((len(e.name) for e in endpoints), default=0)
        lines += [endpoint_line(e, name_width).truncate(width, ellipsis=True) for e in endpoints]
        if len(lines) != self._height_lines:
            self._height_lines = len(lines)
            self.display = bool(lines)
            self.styles.height = len(lines) + _BORDER_ROWS
        self.set_content(Content("\n").join(lines))

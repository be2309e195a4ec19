"""A request's attempts, in full: params sent, answer or error, timing. Selectable and copyable."""

from __future__ import annotations

import json
from datetime import tzinfo
from typing import Any

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from ..formatting import MUTED, clock_time, error_label, error_style, latency

_ERROR_SHOWN = ("kind", "status_code", "message", "rule")


def pretty(value: Any) -> str:
    """A string as it is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def hanging(line: str, width: int) -> list[str]:
    """`line` on lines of at most `width` cells, each continuation indented two more than the line,
    so that a wrapped value stays under its key (Textual's own wrapping starts them at the margin)."""
    if width <= 0 or cell_len(line) <= width:
        return [line]
    text = line.lstrip(" ")
    hang = min(len(line) - len(text) + 2, width // 2)
    lead = min(len(line) - len(text), hang)
    pieces = Content(text).wrap(max(1, width - hang))
    return [" " * lead + pieces[0].plain, *(" " * hang + piece.plain for piece in pieces[1:])]


def _block(title: str, body: str, style: str, width: int) -> Content:
    lines = ["  " + line for line in body.splitlines() or [""]]
    wrapped = [piece for line in lines for piece in hanging(line, width)]
    return Content.assemble((title, f"bold {MUTED}"), "\n", ("\n".join(wrapped), style))


def attempt_content(number: int, attempt: dict[str, Any], tz: tzinfo | None, width: int = 0) -> Content:
    """One attempt; its lines wrapped to `width` cells with hanging indents (0: left to the widget)."""
    error = attempt.get("error")
    millis = attempt.get("latency_ms")
    status = attempt.get("status_code") or (error or {}).get("status_code")
    heading = [
        f"Attempt {number}",
        clock_time(attempt.get("started_at"), tz),
        latency(None if millis is None else millis / 1000),
    ]
    if status is not None:
        heading.append(f"status {status}")
    if attempt.get("endpoint") is not None:  # with [[endpoints]]: where it went
        heading.append(f"endpoint {attempt['endpoint']}")
    blocks = [
        Content.styled(" · ".join(heading), "bold $error" if error else "bold $success"),
        # the body that was sent (model and merged params) when the run knows it, else the params
        _block("body sent", pretty(attempt["body"]), "", width)
        if "body" in attempt
        else _block("params", pretty(attempt.get("params")), "", width),
    ]
    if error is not None:
        kind = str(error.get("kind", "error"))
        lines = [str(error.get("message", ""))]
        # an empty detail (the runner writes `"excerpt": null` when there was no body) is noise
        lines += [
            f"{key}: {pretty(value)}"
            for key, value in error.items()
            if key not in _ERROR_SHOWN and value not in (None, "")
        ]
        blocks.append(_block(f"error · {error_label(kind)}", "\n".join(lines), error_style(kind), width))
        rule = error.get("rule")
        if isinstance(rule, dict):
            blocks.append(_block(rule_title(rule), str(rule.get("change") or "no change"), "$accent", width))
    elif "result" in attempt:
        blocks.append(_block("answer", pretty(attempt["result"]), "", width))
    else:
        blocks.append(Content.styled("in flight: no answer yet", f"italic {MUTED}"))
    extra = {key: attempt[key] for key in ("usage", "finish_reason") if attempt.get(key) is not None}
    if extra:
        blocks.append(_block("details", pretty(extra), MUTED, width))
    return Content("\n").join(blocks)


def rule_title(rule: dict[str, Any]) -> str:
    """'next attempt changed by rule 1 (finish_reason = length)', from a failed attempt's error["rule"]."""
    index = rule.get("index")
    number = index + 1 if isinstance(index, int) else "?"
    return f"next attempt changed by rule {number} ({rule.get('when')})"


QUEUED = "No attempt yet: the request is waiting in the queue."


def trajectory_content(
    attempts: list[dict[str, Any]], tz: tzinfo | None, empty: str = QUEUED, width: int = 0, after: str = ""
) -> Content:
    """The attempts, then `after` (what is not shown yet); `empty` alone when there are none."""
    if not attempts:
        return Content.styled(empty, MUTED)
    shown = [attempt_content(n, a, tz, width) for n, a in enumerate(attempts, 1)]
    if after:
        shown.append(Content.styled(after, f"italic {MUTED}"))
    return Content("\n\n").join(shown)


class TrajectoryView(VerticalScroll):
    """Scrolls through the attempts; select text with the mouse, or `copy_all` for the JSON."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.attempts: list[dict[str, Any]] = []
        self._tz: tzinfo | None = None
        self._empty = QUEUED
        self._after = ""
        self._width = 0  # the text is wrapped for this many cells

    def compose(self) -> ComposeResult:
        yield Static(classes="trajectory-text")

    def show_attempts(
        self,
        attempts: list[dict[str, Any]],
        tz: tzinfo | None,
        *,
        scroll_home: bool = True,
        empty: str = QUEUED,
        after: str = "",
    ) -> None:
        """Show these attempts (`empty` says why there are none, `after` what follows them);
        `scroll_home=False` keeps the reader's place (a live update)."""
        self.attempts, self._tz, self._empty, self._after = attempts, tz, empty, after
        self._paint()
        if scroll_home:
            self.scroll_home(animate=False)

    def _paint(self) -> None:
        # room is kept for the scrollbar, which appears only once the text is long
        self._width = self.content_region.width - self.styles.scrollbar_size_vertical
        self.query_one(Static).update(
            trajectory_content(self.attempts, self._tz, self._empty, self._width, self._after)
        )

    def on_resize(self) -> None:
        if self.content_region.width - self.styles.scrollbar_size_vertical != self._width:
            self._paint()

    def copy_all(self) -> str:
        """Put the attempts on the clipboard as JSON, as in results.jsonl; returns what was copied."""
        attempts = [{k: v for k, v in a.items() if k != "body"} for a in self.attempts]
        text = json.dumps(attempts, indent=2, ensure_ascii=False, default=str)
        self.app.copy_to_clipboard(text)
        return text

    def copy_answer(self) -> str | None:
        """Put the last answer's text alone on the clipboard; None (nothing copied) when no attempt answered."""
        answered = [a["result"] for a in self.attempts if "result" in a and "error" not in a]
        if not answered:
            return None
        text = answer_text(answered[-1])
        self.app.copy_to_clipboard(text)
        return text


def answer_text(result: Any) -> str:
    """An answer as text: the built-in handler's `text`, a string as it is, anything else as JSON."""
    if isinstance(result, dict) and isinstance(result.get("text"), str):
        return result["text"]
    return pretty(result)

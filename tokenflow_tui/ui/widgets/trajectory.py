"""A request's attempts, in full: params sent, answer or error, timing. Selectable and copyable."""
from __future__ import annotations

import json
from datetime import tzinfo
from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from ..formatting import MUTED, clock_time, error_label, error_style, latency

_ERROR_SHOWN = ("kind", "status_code", "message")


def pretty(value: Any) -> str:
    """A string as it is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _block(title: str, body: str, style: str = "") -> Content:
    indented = "\n".join("  " + line for line in body.splitlines() or [""])
    return Content.assemble((title, f"bold {MUTED}"), "\n", (indented, style))


def attempt_content(number: int, attempt: dict[str, Any], tz: tzinfo | None) -> Content:
    error = attempt.get("error")
    millis = attempt.get("latency_ms")
    status = attempt.get("status_code") or (error or {}).get("status_code")
    heading = [
        f"Attempt {number}", clock_time(attempt.get("started_at"), tz),
        latency(None if millis is None else millis / 1000),
    ]
    if status is not None:
        heading.append(f"status {status}")
    blocks = [
        Content.styled(" · ".join(heading), "bold $error" if error else "bold $success"),
        _block("params", pretty(attempt.get("params"))),
    ]
    if error is not None:
        kind = str(error.get("kind", "error"))
        lines = [str(error.get("message", ""))]
        # an empty detail (the runner writes `"excerpt": null` when there was no body) is noise
        lines += [f"{key}: {pretty(value)}" for key, value in error.items()
                  if key not in _ERROR_SHOWN and value not in (None, "")]
        blocks.append(_block(f"error · {error_label(kind)}", "\n".join(lines), error_style(kind)))
    elif "result" in attempt:
        blocks.append(_block("answer", pretty(attempt["result"])))
    else:
        blocks.append(Content.styled("in flight: no answer yet", f"italic {MUTED}"))
    extra = {key: attempt[key] for key in ("usage", "finish_reason") if attempt.get(key) is not None}
    if extra:
        blocks.append(_block("details", pretty(extra), MUTED))
    return Content("\n").join(blocks)


QUEUED = "No attempt yet: the request is waiting in the queue."


def trajectory_content(attempts: list[dict[str, Any]], tz: tzinfo | None, empty: str = QUEUED) -> Content:
    if not attempts:
        return Content.styled(empty, MUTED)
    return Content("\n\n").join(attempt_content(n, a, tz) for n, a in enumerate(attempts, 1))


class TrajectoryView(VerticalScroll):
    """Scrolls through the attempts; select text with the mouse, or `copy_all` for the JSON."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.attempts: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(classes="trajectory-text")

    def show_attempts(self, attempts: list[dict[str, Any]], tz: tzinfo | None, *, scroll_home: bool = True,
                      empty: str = QUEUED) -> None:
        """Show these attempts (`empty` says why there are none); `scroll_home=False` keeps the
        reader's place (a live update)."""
        self.attempts = attempts
        self.query_one(Static).update(trajectory_content(attempts, tz, empty))
        if scroll_home:
            self.scroll_home(animate=False)

    def copy_all(self) -> str:
        """Put the attempts on the clipboard as JSON, as in results.jsonl; returns what was copied."""
        text = json.dumps(self.attempts, indent=2, ensure_ascii=False, default=str)
        self.app.copy_to_clipboard(text)
        return text

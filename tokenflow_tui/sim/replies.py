"""Replies made of bytes: JSON bodies, OpenAI-style errors, and answers (JSON or server-sent events)."""

from __future__ import annotations

from collections.abc import Iterable

from .answers import Completion, answer_body, error_body, stream_events
from .connection import Reply
from .http import LAST_CHUNK, chunk, response_head

JSON = "application/json"
EVENT_STREAM = "text/event-stream"


def json_reply(
    status: int, body: bytes, headers: Iterable[tuple[str, str]] = (), delay_s: float = 0.0, close: bool = False
) -> Reply:
    return Reply(head=response_head(status, JSON, len(body), headers, close), body=body, delay_s=delay_s, close=close)


def error_reply(
    status: int,
    message: str,
    kind: str,
    code: str | None = None,
    param: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    delay_s: float = 0.0,
    close: bool = False,
) -> Reply:
    """A reply with an OpenAI-style JSON error body."""
    return json_reply(status, error_body(message, kind, code, param), headers, delay_s, close)


def answer_parts(
    answer: Completion, answer_id: str, created: int, headers: Iterable[tuple[str, str]] = ()
) -> tuple[bytes, bytes, list[bytes] | None]:
    """The head and body of an answer: JSON, or server-sent events in a chunked body when streamed.

    A streamed answer comes with its events too, each one chunk of the body (the last, empty chunk apart).
    """
    if answer.stream:
        head = response_head(200, EVENT_STREAM, None, (("Cache-Control", "no-cache"), *headers))
        pieces = [chunk(event) for event in stream_events(answer, answer_id, created)]
        return head, b"".join(pieces) + LAST_CHUNK, pieces
    body = answer_body(answer, answer_id, created)
    return response_head(200, JSON, len(body), headers), body, None

"""The reply each fault kind makes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from email.utils import formatdate

from .config import SimulatorConfig
from .connection import How, Reply
from .http import LAST_CHUNK, chunk, response_head
from .replies import JSON, error_reply, json_reply

ABSURD_RETRY_AFTER_S = 999_999
# An HTTP-date has one-second resolution: a date one second ahead may already be past when read.
_DATE_AHEAD_S = 2
MALFORMED_BODY = b'{"id": "chatcmpl-sim", "object": "chat.completion", "choices": [{"messa'
HTML_BODY = b"<html><head><title>Gateway</title></head><body><h1>Please sign in</h1></body></html>"
_HUGE_PREFIX = b'{"object": "chat.completion", "padding": "'
_HUGE_SUFFIX = b'"}'
_HUGE_BLOCK = b"x" * 65536
MALFORMED_EVENT = b'data: {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "choi\n\n'
# the faults that strike a streamed answer halfway through its events; the others answer it as they
# answer any request
MID_STREAM_FAULTS = ("reset", "stall", "malformed", "truncated", "no_done")


def retry_after_headers(config: SimulatorConfig, wall_now: float) -> list[tuple[str, str]]:
    """The Retry-After and retry-after-ms headers of a "429" fault, as configured."""
    headers = []
    if config.retry_after == "date":
        headers.append(("Retry-After", formatdate(wall_now + _DATE_AHEAD_S, usegmt=True)))
    elif config.retry_after == "absurd":
        headers.append(("Retry-After", str(ABSURD_RETRY_AFTER_S)))
    elif config.retry_after != "none":
        headers.append(("Retry-After", str(config.retry_after)))
    if config.retry_after_ms is not None:
        headers.append(("retry-after-ms", str(config.retry_after_ms)))
    return headers


def wait_headers(wait_s: float) -> list[tuple[str, str]]:
    """Retry-After (whole seconds, rounded up) and retry-after-ms for a wait of `wait_s`."""
    return [("Retry-After", str(max(1, math.ceil(wait_s)))), ("retry-after-ms", str(max(1, math.ceil(wait_s * 1000))))]


def ratelimit_headers(limit: int, remaining: int, reset_s: float) -> list[tuple[str, str]]:
    """OpenAI's x-ratelimit-*-requests headers: the limit, what is left, and when all of it is back."""
    return [
        ("x-ratelimit-limit-requests", str(limit)),
        ("x-ratelimit-remaining-requests", str(remaining)),
        ("x-ratelimit-reset-requests", f"{max(1, math.ceil(reset_s * 1000))}ms"),
    ]


def huge_chunks(size: int) -> Iterator[bytes]:
    """A JSON object of exactly `size` bytes, made while it is sent rather than held in memory."""
    yield _HUGE_PREFIX
    blocks, rest = divmod(size - len(_HUGE_PREFIX) - len(_HUGE_SUFFIX), len(_HUGE_BLOCK))
    for _ in range(blocks):
        yield _HUGE_BLOCK
    if rest:
        yield _HUGE_BLOCK[:rest]
    yield _HUGE_SUFFIX


def fault_reply(kind: str, config: SimulatorConfig, head: bytes, body: bytes, delay_s: float, wall_now: float) -> Reply:
    """The reply of fault `kind`; `head` and `body` are the answer the request would otherwise get."""
    if kind == "429":
        return error_reply(
            429,
            f"Rate limit reached for {config.model}. Please try again later.",
            "requests",
            "rate_limit_exceeded",
            headers=retry_after_headers(config, wall_now),
            delay_s=delay_s,
        )
    if kind == "500":
        return error_reply(
            500, "The server had an error while processing your request.", "server_error", delay_s=delay_s
        )
    if kind == "503":
        return error_reply(503, "The server is overloaded or not ready yet.", "server_error", delay_s=delay_s)
    if kind == "reset":
        return Reply(How.RESET, delay_s=delay_s)
    if kind == "stall":
        return Reply(How.STALL, delay_s=delay_s)
    if kind == "malformed":
        return json_reply(200, MALFORMED_BODY, delay_s=delay_s)
    if kind == "truncated":
        # The head promises the whole body (Content-Length, or a chunked stream's last chunk); half comes.
        return Reply(head=head, body=body[: len(body) // 2], delay_s=delay_s, close=True)
    if kind == "drip":
        return Reply(How.DRIP, head=head, body=body, delay_s=delay_s)
    if kind == "huge":
        size = config.huge_bytes
        return Reply(How.STREAM, head=response_head(200, JSON, size), chunks=huge_chunks(size), delay_s=delay_s)
    if kind == "no_done":
        return Reply(head=head, body=body, delay_s=delay_s)
    if kind == "ctype":
        return Reply(
            head=response_head(200, "text/html; charset=utf-8", len(HTML_BODY)), body=HTML_BODY, delay_s=delay_s
        )
    raise ValueError(f"unknown fault kind {kind!r}")


def stream_reply(kind: str | None, head: bytes, pieces: list[bytes], pace_s: float, delay_s: float) -> Reply:
    """A streamed answer (`pieces`: its events as chunks), `pace_s` apart, and as mid-stream fault `kind` cuts it."""
    if kind is None:
        return Reply(How.PACED, head=head, events=[*pieces, LAST_CHUNK], pace_s=pace_s, delay_s=delay_s)
    if kind == "no_done":
        # the last event is "data: [DONE]"
        return Reply(How.PACED, head=head, events=[*pieces[:-1], LAST_CHUNK], pace_s=pace_s, delay_s=delay_s)
    half = pieces[: len(pieces) // 2]
    if kind == "reset":
        return Reply(How.PACED, head=head, events=half, pace_s=pace_s, delay_s=delay_s, then=How.RESET)
    if kind == "stall":
        return Reply(How.PACED, head=head, events=half, pace_s=pace_s, delay_s=delay_s, then=How.STALL)
    if kind == "truncated":
        return Reply(How.PACED, head=head, events=half, pace_s=pace_s, delay_s=delay_s, close=True)
    if kind == "malformed":
        events = [*half, chunk(MALFORMED_EVENT), LAST_CHUNK]
        return Reply(How.PACED, head=head, events=events, pace_s=pace_s, delay_s=delay_s)
    raise ValueError(f"{kind!r} is not a mid-stream fault")

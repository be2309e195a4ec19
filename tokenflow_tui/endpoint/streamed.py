"""A streamed completion (`"stream": true`): its events read into the answer as they arrive (chat and completions).

The answer keeps what came so far, so a stream cut off (idle timeout, reset, deadline) still
yields its partial text, and the time its first token took.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from .idle import IdleTimer
from .sse import EventReader

DONE = b"[DONE]"


class BadStream(Exception):
    """A stream that is not what the API promises (a chunk that does not parse, an error event, too large)."""

    def __init__(self, message: str, excerpt: bytes | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.excerpt = excerpt


class StreamedAnswer:
    """What one attempt's stream has brought so far; `started` and the token times are on the handler's clock."""

    __slots__ = ("started", "parts", "first_token_at", "usage", "finish_reason", "done", "size", "tokens", "open")

    def __init__(self, started: float) -> None:
        self.started = started
        self.parts: list[str] = []
        self.first_token_at: float | None = None
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False  # [DONE] arrived
        self.size = 0  # bytes of the body read
        self.tokens = 0  # events that brought text (a token each, for the live rate)
        self.open = False  # the server answered 2xx with an event stream

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def ttft_ms(self) -> float | None:
        """Milliseconds from the attempt's start to its first text, to the microsecond."""
        if self.first_token_at is None:
            return None
        return int((self.first_token_at - self.started) * 1e6) / 1000

    @property
    def finished(self) -> bool:
        """Whether the answer reached its end: [DONE], or at least a finish reason (some servers omit [DONE])."""
        return self.done or self.finish_reason is not None


async def read_stream(
    read: Callable[[], Awaitable[bytes]],
    answer: StreamedAnswer,
    *,
    chat: bool,
    monotonic: Callable[[], float],
    limit: int,
    idle: IdleTimer | None = None,
    on_tokens: Callable[[int], Any] | None = None,
) -> None:
    """Read the stream into `answer` until [DONE] or its end; raises BadStream, and lets transport errors through."""
    events = EventReader()
    while True:
        chunk = await read()
        if not chunk:
            break
        if idle is not None:
            idle.touch()
        answer.size += len(chunk)
        if answer.size > limit:
            raise BadStream(f"the streamed response is larger than the {limit} bytes allowed")
        _take_events(answer, events.feed(chunk), chat, monotonic, on_tokens)
        if answer.done:
            return
    _take_events(answer, events.end(), chat, monotonic, on_tokens)


def _take_events(
    answer: StreamedAnswer,
    events: Iterable[bytes],
    chat: bool,
    monotonic: Callable[[], float],
    on_tokens: Callable[[int], Any] | None,
) -> None:
    """The events of one read into the answer, up to [DONE]; their tokens told even when one is bad."""
    before = answer.tokens
    try:
        for data in events:
            if data == DONE:
                answer.done = True
                return
            _take(answer, data, chat, monotonic)
    finally:
        if on_tokens is not None and answer.tokens != before:
            on_tokens(answer.tokens - before)


def _take(answer: StreamedAnswer, data: bytes, chat: bool, monotonic: Callable[[], float]) -> None:
    """One event's chunk into the answer."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BadStream("a chunk of the stream is not valid JSON", data) from None
    if type(chunk) is not dict:
        raise BadStream("a chunk of the stream is not a JSON object", data)
    error = chunk.get("error")
    if error is not None:
        message = error.get("message") if type(error) is dict else error
        raise BadStream(f"the server sent an error in the stream: {message}", data)
    usage = chunk.get("usage")
    if type(usage) is dict:
        answer.usage = usage
    choices = chunk.get("choices")
    if type(choices) is not list or not choices:
        return  # the usage chunk has no choices
    choice = choices[0]
    if type(choice) is not dict:
        raise BadStream("a chunk of the stream has a choice that is not an object", data)
    if chat:
        delta = choice.get("delta")
        text = delta.get("content") if type(delta) is dict else None
    else:
        text = choice.get("text")
    if type(text) is str and text:
        if answer.first_token_at is None:
            answer.first_token_at = monotonic()
        answer.parts.append(text)
        answer.tokens += 1
    finish_reason = choice.get("finish_reason")
    if type(finish_reason) is str:
        answer.finish_reason = finish_reason

"""What a request will cost in tokens before it is sent, and what it cost once its usage came back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text; the usage that comes back corrects it
_MAX_TOKEN_KEYS = ("max_tokens", "max_completion_tokens")


def estimate_tokens(line: Any, request_params: Mapping[str, Any]) -> int:
    """Prompt characters / 4 plus the completion's cap (`max_tokens`), as providers count a request.

    `line` is an input line: `prompt` or `messages`, with optional `params` merged over
    `request_params` (the job's [request].params). A line of another shape (a custom handler's
    params) is looked at the same way, and counts 0 where it says nothing.
    """
    if type(line) is not dict:
        return 0
    chars = 0
    prompt = line.get("prompt")
    if type(prompt) is str:
        chars = len(prompt)
    messages = line.get("messages")
    if type(messages) is list:
        for message in messages:
            if type(message) is dict:
                chars += _content_chars(message.get("content"))
    params = line.get("params")
    completion = _max_tokens(params) if type(params) is dict else None
    if completion is None:
        completion = _max_tokens(line)
    if completion is None:
        completion = _max_tokens(request_params) or 0
    return -(-chars // CHARS_PER_TOKEN) + completion


def usage_tokens(usage: Any) -> int | None:
    """The total tokens of a `usage` object (prompt + completion when there is no total), else None."""
    if type(usage) is not dict:
        return None
    total = usage.get("total_tokens")
    if type(total) is int:
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    if not any(type(part) is int for part in parts):
        return None
    return sum(part for part in parts if type(part) is int)


def _content_chars(content: Any) -> int:
    if type(content) is str:
        return len(content)
    if type(content) is list:  # text parts, as vision and audio messages carry them
        return sum(len(part["text"]) for part in content if type(part) is dict and type(part.get("text")) is str)
    return 0


def _max_tokens(params: Mapping[str, Any]) -> int | None:
    for key in _MAX_TOKEN_KEYS:
        value = params.get(key)
        if type(value) is int and value > 0:
            return value
    return None

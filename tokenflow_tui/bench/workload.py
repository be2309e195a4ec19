"""The requests every HTTP measurement sends: the same bodies from the job runner and the yardsticks."""

from __future__ import annotations

from typing import Any

MODEL = "bench"
PARAMS: dict[str, Any] = {"max_tokens": 16}


def prompt(index: int) -> str:
    return f"Write one sentence about the number {index}."


# a streamed answer of the simulator is one event per word, cut to max_tokens words: a longer prompt
# gives exactly STREAM_TOKENS of them
STREAM_TOKENS = 64
STREAM_PARAMS: dict[str, Any] = {"max_tokens": STREAM_TOKENS}


def stream_prompt(index: int) -> str:
    return prompt(index) + " And then some more words" * 12


def body(index: int) -> dict[str, Any]:
    """What the built-in handler sends for input line `{"prompt": prompt(index)}` with `api = "chat"`."""
    return {"model": MODEL, **PARAMS, "messages": [{"role": "user", "content": prompt(index)}]}


def stream_body(index: int) -> dict[str, Any]:
    """What the built-in handler sends for `{"prompt": stream_prompt(index)}` with `stream = true`."""
    return {
        "model": MODEL,
        **STREAM_PARAMS,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": stream_prompt(index)}],
    }

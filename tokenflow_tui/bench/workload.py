"""The requests every HTTP measurement sends: the same bodies from the job runner and the yardstick."""

from __future__ import annotations

from typing import Any

MODEL = "bench"
PARAMS: dict[str, Any] = {"max_tokens": 16}


def prompt(index: int) -> str:
    return f"Write one sentence about the number {index}."


def body(index: int) -> dict[str, Any]:
    """What the built-in handler sends for input line `{"prompt": prompt(index)}` with `api = "chat"`."""
    return {"model": MODEL, **PARAMS, "messages": [{"role": "user", "content": prompt(index)}]}

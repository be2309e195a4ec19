"""What marks a final result of the built-in handler as failed; light, so the runner asks without the HTTP stack."""

from __future__ import annotations

from typing import Any

from ..engine import UnexpectedUserException


def is_failed_result(result: Any) -> bool:
    """Whether a final result of the built-in handler is a failure (for TokenFlowTask's `is_failure`).

    Its failed attempts end in {"error": {...}}; an exception it raised is a failure too.
    """
    return (type(result) is dict and "error" in result) or type(result) is UnexpectedUserException

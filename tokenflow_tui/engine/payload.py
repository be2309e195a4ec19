"""What a handler may say through its payload, the third value it returns (beyond the seed).

A payload that is a dict may hold:
- `usage`: `{"prompt_tokens": n, "completion_tokens": m}`, the tokens the attempt used (for budgets
  and tokens/s);
- `failed`: a sentence (or True) on the last attempt: the request counts as failed, with that message;
- `error_kind`: with `failed`, the kind the failure is grouped by (default `handler_failed`).
Any other payload (None, or anything else) says nothing of these.
"""

from __future__ import annotations

from typing import Any

from .error_kinds import HANDLER_FAILED


def says_failed(payload: Any) -> bool:
    return type(payload) is dict and bool(payload.get("failed"))


def payload_error(payload: Any) -> dict[str, Any] | None:
    """The error a payload declares ({"kind", "message"}), or None when it declares none."""
    if not says_failed(payload):
        return None
    failed = payload["failed"]
    message = failed if isinstance(failed, str) else "the handler said the request failed"
    kind = payload.get("error_kind")
    return {"kind": kind if isinstance(kind, str) and kind else HANDLER_FAILED, "message": message}


def payload_usage(payload: Any) -> dict[str, Any] | None:
    """The token usage a payload declares, or None."""
    usage = payload.get("usage") if type(payload) is dict else None
    return usage if type(usage) is dict else None

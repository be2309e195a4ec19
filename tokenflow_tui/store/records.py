"""A finished request as one line of results.jsonl.

A record is {"id", "index", "status", "result", "usage", "error", "attempts"[, "job_version"]}, keys in
that order: recovery and export read `index` and `status` near the start of every line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ..engine import TokenFlowRequest, TokenFlowRequestTrajectoryElement, UnexpectedUserException
from ..engine.error_kinds import HANDLER_EXCEPTION
from ..engine.payload import payload_error, payload_usage

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
_OPTIONS = orjson.OPT_APPEND_NEWLINE


def build_record(request: TokenFlowRequest, builtin: bool, job_version: str | None = None) -> dict[str, Any]:
    """The record of a finished request; `builtin` says the built-in OpenAI handler made its results,
    `job_version` names the version of the job that made it (kept when given)."""
    elements = request.request_trajectory.trajectory
    index = request.id
    record_id = request_id(elements[0].request_params, index)
    make_attempt = _builtin_attempt if builtin else _handler_attempt
    # most requests take one attempt; skipping the comprehension saves a fifth of the cost
    attempts = [make_attempt(elements[0])] if len(elements) == 1 else [make_attempt(e) for e in elements]
    last = attempts[-1]
    error = last.get("error")
    if error is None and request.failure is not None:
        # the engine ended it at max_attempts: the last attempt keeps the handler's result
        error = {"kind": request.failure, "message": f"gave up after {len(attempts)} attempts (retry.max_attempts)"}
    record = {
        "id": record_id,
        "index": index,
        "status": "failed" if error is not None else "done",
        "result": None if error is not None else last["result"],
        "usage": _sum_usage(attempts),
        "error": error,
        "attempts": attempts,
    }
    if job_version is not None:
        record["job_version"] = job_version
    return record


def request_id(params: Any, index: int) -> Any:
    """A request's id as its record gives it: the input line's `id`, else its index in the input."""
    return params.get("id", index) if type(params) is dict else index


def record_error_kind(record: dict[str, Any] | None) -> str:
    """The error kind of a failed record ("unknown" when it names none)."""
    error = (record or {}).get("error")
    kind = error.get("kind") if type(error) is dict else None
    return str(kind) if kind else "unknown"


def _latency_ms(latency_s: float | None) -> float | None:
    # to the microsecond; int() then / is 4x cheaper than round() and prints as short
    return None if latency_s is None else int(latency_s * 1e6) / 1000


def _builtin_attempt(element: TokenFlowRequestTrajectoryElement) -> dict[str, Any]:
    result = element.result
    if type(result) is not dict:
        return _handler_attempt(element)  # the built-in handler raised: an UnexpectedUserException
    error = result.get("error")
    if error is not None:
        attempt = {
            "params": element.request_params,
            "error": error,
            "status_code": error.get("status_code"),
            "started_at": element.started_at,
            "latency_ms": _latency_ms(element.latency_s),
        }
        if "usage" in result:  # an answer that failed a [checks] check: its tokens were spent
            attempt["usage"] = result["usage"]
            attempt["finish_reason"] = result.get("finish_reason")
    else:
        attempt = {
            "params": element.request_params,
            "result": result["text"],
            "status_code": result.get("status_code"),
            "usage": result.get("usage"),
            "finish_reason": result.get("finish_reason"),
            "started_at": element.started_at,
            "latency_ms": _latency_ms(element.latency_s),
        }
    # streamed attempts only: time to first token (None when no text came)
    if "ttft_ms" in result:
        attempt["ttft_ms"] = result["ttft_ms"]
    # with [[endpoints]]: the one the attempt went to
    if "endpoint" in result:
        attempt["endpoint"] = result["endpoint"]
    return attempt


def _handler_attempt(element: TokenFlowRequestTrajectoryElement) -> dict[str, Any]:
    result = element.result
    if type(result) is UnexpectedUserException:
        return {
            "params": element.request_params,
            "error": {"kind": HANDLER_EXCEPTION, "message": result.exception_str, "traceback": result.traceback_str},
            "started_at": element.started_at,
            "latency_ms": _latency_ms(element.latency_s),
        }
    attempt = {
        "params": element.request_params,
        "result": result,
        "started_at": element.started_at,
        "latency_ms": _latency_ms(element.latency_s),
    }
    payload = element.payload
    if payload is not None:  # what the handler said of the attempt (engine/payload.py)
        if (usage := payload_usage(payload)) is not None:
            attempt["usage"] = usage
        if (error := payload_error(payload)) is not None:
            attempt["error"] = error
    return attempt


def _sum_usage(attempts: list[dict[str, Any]]) -> dict[str, int] | None:
    if len(attempts) == 1:
        return attempts[0].get("usage")
    usages: list[dict[str, int]] = [u for a in attempts if (u := a.get("usage")) is not None]
    if not usages:
        return None
    if len(usages) == 1:
        return usages[0]
    return {key: sum(u.get(key) or 0 for u in usages) for key in USAGE_KEYS}


def encode_record(record: dict[str, Any]) -> bytes:
    """One line of JSON ending in a newline; a value orjson cannot encode is written as its str()."""
    try:
        return orjson.dumps(record, default=printable, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return orjson.dumps(_encodable_record(record), default=printable, option=_OPTIONS)


def _encodable_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy whose user-supplied values (ids, params, results, a handler's error) are replaced by str() where
    not encodable."""
    attempts = []
    for attempt in record["attempts"]:
        attempt = dict(attempt)
        for key in ("params", "result", "error"):
            if key in attempt:
                attempt[key] = _encodable(attempt[key])
        attempts.append(attempt)
    return {
        **record,
        "id": _encodable(record["id"]),
        "result": _encodable(record["result"]),
        "error": _encodable(record["error"]),
        "attempts": attempts,
    }


def _encodable(value: Any) -> Any:
    # non-str keys are kept as keys (orjson turns them into strings); ints beyond 64 bits,
    # cycles and the like become the value's str(); a lone surrogate (not UTF-8) a replacement character
    try:
        return orjson.loads(orjson.dumps(value, default=printable, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:
        return printable(value).encode("utf-8", "replace").decode("utf-8")


def printable(value: Any, show: Callable[[Any], str] = str) -> str:
    """show(value), or what the value is when even that raises: a handler's result never stops the sink."""
    try:
        return show(value)
    except Exception:
        return f"<a {type(value).__name__} that cannot be written>"

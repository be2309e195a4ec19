"""Record shapes for the built-in handler and for a user's handler, and their encoding."""

from __future__ import annotations

from typing import Any

import orjson

from tokenflow_tui.engine import (
    ActionContinue,
    ActionDone,
    TokenFlowRequest,
    TokenFlowRequestTrajectory,
    TokenFlowRequestTrajectoryElement,
    UnexpectedUserException,
)
from tokenflow_tui.store.records import build_record, encode_record, record_error_kind, request_id

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def request(index: int, *attempts: tuple[Any, Any]) -> TokenFlowRequest:
    """A finished request: (params, result) per attempt, started one second apart, 250.5 ms each."""
    elements = []
    for number, (params, result) in enumerate(attempts):
        last = number == len(attempts) - 1
        action = ActionDone() if last else ActionContinue(attempts[number + 1][0])
        elements.append(TokenFlowRequestTrajectoryElement(params, result, action, 1000.0 + number, 0.2505))
    return TokenFlowRequest(index, TokenFlowRequestTrajectory(elements))


def success(text: str, usage: dict[str, int] | None = USAGE) -> dict[str, Any]:
    return {"text": text, "usage": usage, "status_code": 200, "finish_reason": "stop"}


def failure(kind: str, message: str, status_code: int | None) -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message, "status_code": status_code, "excerpt": None}}


def test_builtin_success_in_one_attempt() -> None:
    params = {"id": "q-1", "prompt": "Hi"}
    record = build_record(request(3, (params, success("Hello"))), builtin=True)
    assert record == {
        "id": "q-1",
        "index": 3,
        "status": "done",
        "result": "Hello",
        "usage": USAGE,
        "error": None,
        "attempts": [
            {
                "params": params,
                "result": "Hello",
                "status_code": 200,
                "usage": USAGE,
                "finish_reason": "stop",
                "started_at": 1000.0,
                "latency_ms": 250.5,
            }
        ],
    }


def test_builtin_success_after_retries() -> None:
    params = {"prompt": "Hi"}
    record = build_record(
        request(
            7,
            (params, failure("http_429", "slow down", 429)),
            (params, failure("timeout", "no answer within 30 s", None)),
            (params, success("Hello")),
        ),
        builtin=True,
    )
    assert record["id"] == 7  # no "id" in the input line: the index
    assert (record["status"], record["result"], record["usage"], record["error"]) == ("done", "Hello", USAGE, None)
    assert record["attempts"] == [
        {
            "params": params,
            "error": failure("http_429", "slow down", 429)["error"],
            "status_code": 429,
            "started_at": 1000.0,
            "latency_ms": 250.5,
        },
        {
            "params": params,
            "error": failure("timeout", "no answer within 30 s", None)["error"],
            "status_code": None,
            "started_at": 1001.0,
            "latency_ms": 250.5,
        },
        {
            "params": params,
            "result": "Hello",
            "status_code": 200,
            "usage": USAGE,
            "finish_reason": "stop",
            "started_at": 1002.0,
            "latency_ms": 250.5,
        },
    ]


def test_builtin_usage_is_summed_over_attempts() -> None:
    params = {"prompt": "Hi"}
    record = build_record(
        request(0, (params, success("a")), (params, success("b", None)), (params, success("c"))), builtin=True
    )
    assert record["usage"] == {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
    assert record["result"] == "c"


def test_builtin_failure_keeps_the_last_error() -> None:
    params = {"id": 42, "prompt": "Hi"}
    record = build_record(
        request(
            1, (params, failure("http_5xx", "server error", 503)), (params, failure("http_4xx", "bad request", 400))
        ),
        builtin=True,
    )
    assert record == {
        "id": 42,
        "index": 1,
        "status": "failed",
        "result": None,
        "usage": None,
        "error": {"kind": "http_4xx", "message": "bad request", "status_code": 400, "excerpt": None},
        "attempts": [
            {
                "params": params,
                "error": failure("http_5xx", "server error", 503)["error"],
                "status_code": 503,
                "started_at": 1000.0,
                "latency_ms": 250.5,
            },
            {
                "params": params,
                "error": failure("http_4xx", "bad request", 400)["error"],
                "status_code": 400,
                "started_at": 1001.0,
                "latency_ms": 250.5,
            },
        ],
    }


def test_user_handler_results_and_continued_params() -> None:
    first, second = {"id": "u-1", "n": 1}, {"n": 2}
    record = build_record(request(5, (first, {"partial": [1, 2]}), (second, "final answer")), builtin=False)
    assert record == {
        "id": "u-1",  # from the first attempt's params: the input line
        "index": 5,
        "status": "done",
        "result": "final answer",
        "usage": None,
        "error": None,
        "attempts": [
            {"params": first, "result": {"partial": [1, 2]}, "started_at": 1000.0, "latency_ms": 250.5},
            {"params": second, "result": "final answer", "started_at": 1001.0, "latency_ms": 250.5},
        ],
    }


def test_user_handler_exception_is_a_failure() -> None:
    exception = UnexpectedUserException("ValueError: no", "Traceback (most recent call last):\n  ...\n")
    record = build_record(request(2, ("not a dict", exception)), builtin=False)
    error = {
        "kind": "handler_exception",
        "message": "ValueError: no",
        "traceback": "Traceback (most recent call last):\n  ...\n",
    }
    assert record == {
        "id": 2,
        "index": 2,
        "status": "failed",
        "result": None,
        "usage": None,
        "error": error,
        "attempts": [{"params": "not a dict", "error": error, "started_at": 1000.0, "latency_ms": 250.5}],
    }


def test_attempt_never_timed_has_null_time() -> None:
    element = TokenFlowRequestTrajectoryElement({"prompt": "x"}, success("y"), ActionDone())
    record = build_record(TokenFlowRequest(0, TokenFlowRequestTrajectory([element])), builtin=True)
    assert (record["attempts"][0]["started_at"], record["attempts"][0]["latency_ms"]) == (None, None)


def test_encoding_is_one_line_with_id_index_status_first() -> None:
    record = build_record(request(9, ({"id": "a\nb", "prompt": "x"}, success("line one\nline two"))), builtin=True)
    line = encode_record(record)
    assert line.startswith(b'{"id":"a\\nb","index":9,"status":"done","result":"line one\\nline two",')
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == record


def test_values_orjson_cannot_encode_become_strings() -> None:
    params = {"id": "x", "tags": {3}}  # a set: orjson has no encoding for it
    result = {"big": 2**70, 1: "int key"}
    record = build_record(request(0, (params, result)), builtin=False)
    decoded = orjson.loads(encode_record(record))
    assert decoded["attempts"][0]["params"] == {"id": "x", "tags": "{3}"}
    assert decoded["result"] == str(result)  # a 70-bit int has no JSON encoding in orjson
    assert decoded["attempts"][0]["result"] == str(result)


def test_a_request_id_is_the_lines_id_else_its_index():
    assert request_id({"id": "q7", "prompt": "x"}, 3) == "q7"
    assert request_id({"id": 0}, 3) == 0
    assert request_id({"prompt": "x"}, 3) == 3
    assert request_id(["not", "a", "line", "object"], 3) == 3


def test_a_failed_records_error_kind_is_unknown_when_it_names_none():
    assert record_error_kind({"status": "failed", "error": {"kind": "http_429"}}) == "http_429"
    assert record_error_kind({"status": "failed", "error": {"kind": None}}) == "unknown"
    assert record_error_kind({"status": "failed", "error": "refused"}) == "unknown"
    assert record_error_kind({"status": "failed"}) == "unknown"
    assert record_error_kind(None) == "unknown"


def test_the_builtin_handler_raising_is_a_failed_record_not_a_crash_of_the_sink() -> None:
    # e.g. a key with a character no header can hold: httpx raised UnicodeEncodeError in the built-in handler
    exception = UnexpectedUserException("UnicodeEncodeError: 'ascii' codec can't encode", "Traceback …\n")
    record = build_record(request(4, ({"id": "k", "prompt": "x"}, exception)), builtin=True, job_version="ab12cd34")
    error = {
        "kind": "handler_exception",
        "message": "UnicodeEncodeError: 'ascii' codec can't encode",
        "traceback": "Traceback …\n",
    }
    assert record == {
        "id": "k",
        "index": 4,
        "status": "failed",
        "result": None,
        "usage": None,
        "error": error,
        "attempts": [{"params": {"id": "k", "prompt": "x"}, "error": error, "started_at": 1000.0, "latency_ms": 250.5}],
        "job_version": "ab12cd34",
    }
    assert orjson.loads(encode_record(record)) == record


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def test_any_result_a_handler_can_return_is_written_as_one_line() -> None:
    results = [
        _Unprintable(),
        {"inner": _Unprintable()},
        _cycle(),
        b"\xff\xfe bytes",
        float("nan"),
        {(1, 2): "tuple key"},
        {"deep": [[[[["x"]]]]]},
        "\udcff lone surrogate",
        2**200,
        None,
    ]
    for number, result in enumerate(results):
        record = build_record(request(number, ({"id": number, "prompt": "x"}, result)), builtin=False)
        line = encode_record(record)
        assert line.endswith(b"}\n") and line.count(b"\n") == 1
        decoded = orjson.loads(line)
        assert (decoded["index"], decoded["status"]) == (number, "done")
    assert orjson.loads(encode_record(build_record(request(0, ({}, _Unprintable())), builtin=False)))["result"] == (
        "<a _Unprintable that cannot be written>"
    )

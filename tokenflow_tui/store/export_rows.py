"""The records of a run as export writes them: in input order, with the input's own columns recovered.

A record's first attempt holds the request as it was read (job/formats shapes every input format
like a line of our JSONL), and state.toml says which format and columns the input had: from the two,
each request's input row is rebuilt without reading the input again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from .export import STATE_INPUT_KEY, RunContents, final_records
from .state_file import STATE_FILE, read_state

TOKENFLOW, OPENAI_BATCH = "tokenflow", "openai-batch"  # the input formats named in state.toml (job/model)
_OUR_COLUMNS = ("id", "prompt", "messages", "params")
_BATCH_COLUMNS = ("custom_id", "method", "url", "body")


def iter_records(run: RunContents, wanted: tuple[int, ...]) -> Iterator[dict[str, Any]]:
    """The last record of each input request whose status code is in `wanted`, by input index."""
    for _, line in final_records(run, wanted):
        yield orjson.loads(line)


def input_of(run: RunContents) -> dict[str, Any]:
    """The input's description that the run saved in state.toml (our JSONL when it saved none)."""
    described = (read_state(run.run_dir / STATE_FILE) or {}).get(STATE_INPUT_KEY)
    return described if isinstance(described, dict) else {"format": TOKENFLOW}


def request_of(record: dict[str, Any]) -> dict[str, Any]:
    """The request as it was read from the input (the first attempt's params)."""
    attempts = record.get("attempts") or [{}]
    params = attempts[0].get("params")
    return params if isinstance(params, dict) else {}


def input_columns(described: dict[str, Any]) -> tuple[str, ...]:
    """The input's columns, in its order."""
    if described["format"] == OPENAI_BATCH:
        return _BATCH_COLUMNS
    columns = described.get("columns")
    return tuple(columns) if isinstance(columns, list) else _OUR_COLUMNS


def input_row(request: dict[str, Any], described: dict[str, Any]) -> dict[str, Any]:
    """The request as a row of the input's columns (missing values None)."""
    input_format = described["format"]
    if input_format == OPENAI_BATCH:
        return {
            "custom_id": request.get("id"),
            "method": "POST",
            "url": request.get("url"),
            "body": request.get("body"),
        }
    if input_format == TOKENFLOW:
        return {column: request.get(column) for column in _OUR_COLUMNS}
    metadata = request.get("metadata") or {}
    places = {
        described.get("id_column"): "id",
        described.get("prompt_column"): "prompt",
        described.get("messages_column"): "messages",
    }
    return {
        column: request.get(places[column]) if column in places else metadata.get(column)
        for column in input_columns(described)
    }


def result_columns(record: dict[str, Any]) -> dict[str, Any]:
    """What a run adds beside the input's columns: status, result, tokens, attempts, latency, error."""
    usage = record.get("usage") or {}
    attempts = record.get("attempts") or []
    error = record.get("error")
    return {
        "status": record.get("status"),
        "result": record.get("result"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "attempts": len(attempts),
        "latency_ms": attempts[-1].get("latency_ms") if attempts else None,
        "error": f"{error.get('kind')}: {error.get('message')}" if isinstance(error, dict) else None,
    }


def output_row(record: dict[str, Any], described: dict[str, Any]) -> dict[str, Any]:
    """The input's columns, then the run's; a run column whose name the input uses is called tokenflow_<name>."""
    row = input_row(request_of(record), described)
    for column, value in result_columns(record).items():
        row[f"tokenflow_{column}" if column in row else column] = value
    return row

"""Export in the OpenAI Batch API's output shape: `{"id", "custom_id", "response", "error"}` per line.

A done request's `response.body` is rebuilt as the API it went to answers (chat completion, text
completion or embeddings list) from what its record keeps: the text, usage and finish reason.
"""

from __future__ import annotations

from typing import Any

from .export_rows import request_of

_APIS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/embeddings": "embeddings"}


def batch_line(record: dict[str, Any], described: dict[str, Any]) -> dict[str, Any]:
    """The Batch API's output line of a record: `response` when it is done, `error` when it failed."""
    index = record.get("index")
    attempts = record.get("attempts") or [{}]
    custom_id = record.get("id")
    line: dict[str, Any] = {
        "id": f"batch_req_{index}",
        "custom_id": custom_id if isinstance(custom_id, str) else str(custom_id),
        "response": None,
        "error": None,
    }
    error = record.get("error")
    if record.get("status") == "failed":
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("kind") if isinstance(error, dict) else None
        line["error"] = {"code": code, "message": message}
        return line
    last = attempts[-1]
    line["response"] = {
        "status_code": last.get("status_code") or 200,
        "request_id": f"req_{index}_{len(attempts)}",
        "body": _body(record, last, described),
    }
    return line


def _body(record: dict[str, Any], last: dict[str, Any], described: dict[str, Any]) -> Any:
    request = request_of(record)
    result = record.get("result")
    api = _APIS.get(str(request.get("url")), described.get("api"))
    if api is None:
        return result if isinstance(result, dict) else {"result": result}  # a [handler]'s own result
    sent = request.get("body") or {}
    model = sent.get("model", described.get("model"))
    created = int(last.get("started_at") or 0)
    usage = record.get("usage")
    name = f"tokenflow-{record.get('index')}"
    if api == "embeddings":
        vectors = result if result and isinstance(result[0], list) else [result]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": model, "usage": usage}
    choice: dict[str, Any] = {"index": 0}
    if api == "chat":
        choice["message"] = {"role": "assistant", "content": result}
        prefix, kind = "chatcmpl", "chat.completion"
    else:
        choice["text"] = result
        prefix, kind = "cmpl", "text_completion"
    choice.update(logprobs=None, finish_reason=last.get("finish_reason"))
    return {
        "id": f"{prefix}-{name}",
        "object": kind,
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage,
    }

"""OpenAI-shaped bodies: reading a completion request, and writing answers, stream events and errors.

Answers are deterministic so tests can match them to prompts: "Echo: " + the last user message
(chat) or the prompt (completions), cut to `max_tokens` words; an embedding is a unit vector worked
out from its input's text alone (the same text, the same vector).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

Api = Literal["chat", "completions", "embeddings"]
# an embedding's length unless the request asks for `dimensions` (at most MAX_DIMENSIONS)
EMBEDDING_DIMENSIONS = 8
MAX_DIMENSIONS = 4096

_WORD_PIECE = re.compile(r"\S+\s*")


class BadRequest(Exception):
    """The request body is not a valid completion request; the message is for the client."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def count_tokens(chars: int) -> int:
    """The simulator's token estimate: a quarter of the characters, rounded up, at least 1."""
    return max(1, -(-chars // 4))


@dataclass(frozen=True, slots=True)
class Completion:
    """What the simulator answers to one valid completion request."""

    api: Api
    model: str
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    stream: bool
    inputs: tuple[str, ...] = ()  # embeddings: the texts to embed, in order
    dimensions: int = 0  # embeddings: each vector's length


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Like vLLM's chat templates: the text parts joined by newlines, other parts ignored.
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def _chat_prompt(body: dict[str, Any]) -> tuple[str, int]:
    """The last user message's text, and the characters of every message."""
    messages = body.get("messages")
    if messages is None:
        raise BadRequest("'messages' is a required property", "messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", "messages")
    texts: list[tuple[object, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{index}] must be an object", "messages")
        texts.append((message.get("role"), _message_text(message.get("content"))))
    last_user = next((text for role, text in reversed(texts) if role == "user"), "")
    return last_user, sum(len(text) for _, text in texts)


def _completions_prompt(body: dict[str, Any]) -> tuple[str, int]:
    prompt = body.get("prompt")
    if prompt is None:
        raise BadRequest("'prompt' is a required property", "prompt")
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string", "prompt")
    return prompt, len(prompt)


def _embeddings_request(body: dict[str, Any], model: str) -> Completion:
    texts = body.get("input")
    if texts is None:
        raise BadRequest("'input' is a required property", "input")
    inputs = (texts,) if isinstance(texts, str) else texts
    if not isinstance(inputs, (tuple, list)) or not inputs or not all(isinstance(text, str) for text in inputs):
        raise BadRequest("'input' must be a string or a non-empty array of strings", "input")
    dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise BadRequest(f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}", "dimensions")
    return Completion(
        api="embeddings",
        model=model,
        content="",
        finish_reason="stop",
        prompt_tokens=sum(count_tokens(len(text)) for text in inputs),
        completion_tokens=0,
        stream=False,
        inputs=tuple(inputs),
        dimensions=dimensions,
    )


def embedding(text: str, dimensions: int) -> list[float]:
    """The vector of `text`: unit length, its values from a hash of the text (six decimals)."""
    digest = hashlib.shake_256(text.encode("utf-8", "surrogatepass")).digest(2 * dimensions)
    values = [int.from_bytes(digest[i : i + 2], "big") / 32767.5 - 1.0 for i in range(0, 2 * dimensions, 2)]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [round(value / norm, 6) for value in values]


def read_completion(api: Api, raw: bytes) -> Completion:
    """Validate a request body and work out its answer; raise BadRequest when it is invalid."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    if api == "embeddings":
        return _embeddings_request(body, model)
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise BadRequest("'max_tokens' must be a positive integer", "max_tokens")
    prompt, prompt_chars = _chat_prompt(body) if api == "chat" else _completions_prompt(body)
    content = "Echo: " + prompt
    finish_reason = "stop"
    if max_tokens is not None:
        words = content.split()
        if len(words) > max_tokens:
            content = " ".join(words[:max_tokens])
            finish_reason = "length"
    return Completion(
        api=api,
        model=model,
        content=content,
        finish_reason=finish_reason,
        prompt_tokens=count_tokens(prompt_chars),
        completion_tokens=count_tokens(len(content)),
        stream=body.get("stream") is True,
    )


def shaped_answer(answer: Completion, json_answers: bool, fault: str | None) -> Completion:
    """The answer as `json_answers` and an answer fault ("length", "non_json") make it."""
    content, finish_reason = answer.content, answer.finish_reason
    if json_answers and fault != "non_json":
        content = orjson.dumps({"answer": content}).decode()
    elif fault == "non_json":
        content = "Sure! Here is my answer: " + content
    if fault == "length":
        content, finish_reason = content[: max(1, len(content) // 2)], "length"
    if content == answer.content and finish_reason == answer.finish_reason:
        return answer
    return replace(answer, content=content, finish_reason=finish_reason, completion_tokens=count_tokens(len(content)))


def _usage(answer: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def answer_body(answer: Completion, answer_id: str, created: int) -> bytes:
    """The JSON body of a non-streamed answer."""
    if answer.api == "embeddings":
        data = [
            {"object": "embedding", "index": index, "embedding": embedding(text, answer.dimensions)}
            for index, text in enumerate(answer.inputs)
        ]
        usage = {"prompt_tokens": answer.prompt_tokens, "total_tokens": answer.prompt_tokens}
        return orjson.dumps({"object": "list", "data": data, "model": answer.model, "usage": usage})
    if answer.api == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": answer.content}}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": answer.content}
        obj = "text_completion"
    choice["logprobs"] = None
    choice["finish_reason"] = answer.finish_reason
    return orjson.dumps(
        {
            "id": answer_id,
            "object": obj,
            "created": created,
            "model": answer.model,
            "choices": [choice],
            "usage": _usage(answer),
        }
    )


def stream_events(answer: Completion, answer_id: str, created: int) -> list[bytes]:
    """The server-sent events of a streamed answer: one per word, the finish, the usage, [DONE]."""
    chat = answer.api == "chat"
    obj = "chat.completion.chunk" if chat else "text_completion"

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {"id": answer_id, "object": obj, "created": created, "model": answer.model, "choices": choices, **extra}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def piece(text: str, finish_reason: str | None) -> dict[str, Any]:
        if chat:
            delta = {"content": text} if text else {}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

    events = []
    if chat:
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        events.append(event([role]))
    events.extend(event([piece(text, None)]) for text in _WORD_PIECE.findall(answer.content))
    events.append(event([piece("", answer.finish_reason)]))
    events.append(event([], usage=_usage(answer)))
    events.append(b"data: [DONE]\n\n")
    return events


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> bytes:
    """An OpenAI-style error body."""
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def models_body(model: str) -> bytes:
    """The body of GET /models: the one model the simulator names."""
    listed = {"id": model, "object": "model", "created": 0, "owned_by": "tokenflow-sim"}
    return orjson.dumps({"object": "list", "data": [listed]})

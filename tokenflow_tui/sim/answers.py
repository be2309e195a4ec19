"""OpenAI-shaped bodies: reading a completion request, and writing answers, stream events and errors.

Answers are deterministic so tests can match them to prompts: "Echo: " + the last user message
(chat) or the prompt (completions), cut to `max_tokens` words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

Api = Literal["chat", "completions"]

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

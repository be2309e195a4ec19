"""The built-in handler: one attempt of a request to an OpenAI-compatible API per call (DESIGN §2.2, §6).

The engine keeps the trajectory; this handler makes the attempt, turns its outcome into a plain
JSON-able result and tells the engine whether to retry and when.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson

from ..engine import ActionContinue, ActionDone, Clock, SystemClock, TokenFlowAction, TokenFlowRequestTrajectory
from ..engine.error_kinds import BAD_RESPONSE, CONNECTION, HTTP_4XX, HTTP_5XX, HTTP_429, TIMEOUT
from .deadlines import Deadlines
from .retry_policy import Rng, is_retryable, parse_retry_after, retry_delay_s
from .transport import TRANSPORT_ERRORS, ClientLike, error_kind, read_body, response_headers

EXCERPT_CHARS = 200
_MESSAGE_CHARS = 400
_REDACTED = "[api key]"
_DONE = ActionDone()


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    base_url: str  # the API root, e.g. https://api.openai.com/v1
    api: Literal["chat", "completions"]
    model: str
    params: Mapping[str, Any] = field(default_factory=dict)  # merged into every request body
    timeout_s: float = 120.0  # overall deadline of one attempt, body included
    max_attempts: int = 5  # per request, the first one included
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_body_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.api not in ("chat", "completions"):
            raise ValueError(f"HandlerSettings: api must be 'chat' or 'completions', got {self.api!r}")
        if self.max_attempts < 1:
            raise ValueError(f"HandlerSettings: max_attempts must be ≥ 1, got {self.max_attempts}")
        if not self.timeout_s > 0:
            raise ValueError(f"HandlerSettings: timeout_s must be > 0, got {self.timeout_s}")


def is_failed_result(result: Any) -> bool:
    """Whether a final result of this handler is a failure (for TokenFlowTask's `is_failure`)."""
    return type(result) is dict and "error" in result


class OpenAIHandler:
    """`await handler(trajectory)` makes the trajectory's last attempt and returns (action, result, payload).

    The request params are an input line: `messages` or `prompt`, optional `id`, optional `params`.
    `on_rate_limit(delay_s)` hears of every 429 with the wait it implies, so a rate controller can
    slow every worker; `on_auth_error(status_code, message)` hears of every 401 and 403;
    `on_headers(headers)` sees the headers of every response (for the x-ratelimit-* ones).
    """

    def __init__(
        self,
        settings: HandlerSettings,
        client: ClientLike,
        api_key: str | None,
        rng: Rng | None = None,
        clock: Clock | None = None,
        on_rate_limit: Callable[[float], Any] | None = None,
        on_auth_error: Callable[[int, str], Any] | None = None,
        on_headers: Callable[[Mapping[str, str]], Any] | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._chat = settings.api == "chat"
        path = "/chat/completions" if self._chat else "/completions"
        # parsed once: httpx would parse a string URL again on every request
        self._url = httpx.URL(settings.base_url.rstrip("/") + path)
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._api_key = api_key
        self._base_body = {"model": settings.model, **settings.params}
        self._timeout_s = settings.timeout_s
        self._deadlines = Deadlines(settings.timeout_s)
        self._max_body_bytes = settings.max_body_bytes
        self._rng: Rng = rng or random.Random()
        self._clock: Clock = clock or SystemClock()
        self._on_rate_limit = on_rate_limit
        self._on_auth_error = on_auth_error
        self._on_headers = on_headers

    async def __call__(self, trajectory: TokenFlowRequestTrajectory) -> tuple[TokenFlowAction, dict[str, Any], Any]:
        line = trajectory.trajectory[-1].request_params
        content = orjson.dumps(request_body(self._base_body, line, self._chat))
        try:
            with self._deadlines:
                result, headers = await self._attempt(content)
        except TimeoutError:
            result, headers = self._timeout_error(), None
        if "error" not in result:
            return _DONE, result, None
        return self._after_error(trajectory.length(), line, result, headers)

    async def _attempt(self, content: bytes) -> tuple[dict[str, Any], Mapping[str, str] | None]:
        """The result of one POST, and the response headers when it failed with an HTTP status."""
        try:
            async with self._client.stream("POST", self._url, content=content, headers=self._headers) as response:
                headers = response_headers(response)
                if self._on_headers is not None:
                    self._on_headers(headers)
                try:
                    body, complete = await read_body(response, self._max_body_bytes)
                except TRANSPORT_ERRORS as exc:
                    if error_kind(exc) == TIMEOUT:
                        return self._timeout_error(), None
                    message = f"the response was cut short: {_describe(exc)}"
                    return self._error(BAD_RESPONSE, message, response.status_code, None), None
                return self._parse(response, headers, body, complete)
        except TRANSPORT_ERRORS as exc:
            if error_kind(exc) == TIMEOUT:
                return self._timeout_error(), None
            return self._error(CONNECTION, f"the connection failed: {_describe(exc)}", None, None), None

    def _parse(
        self, response: httpx.Response, headers: Mapping[str, str], body: bytes, complete: bool
    ) -> tuple[dict[str, Any], Mapping[str, str] | None]:
        status = response.status_code
        if not complete:
            message = f"the response body is larger than the {self._max_body_bytes} bytes allowed"
            return self._error(BAD_RESPONSE, message, status, body), None
        if not 200 <= status < 300:
            return self._http_error(response, body), headers
        content_type = headers.get("content-type", "")
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            message = f"the response is not JSON (content type {content_type!r})"
            return self._error(BAD_RESPONSE, message, status, body), None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._error(BAD_RESPONSE, "the response body is not valid JSON", status, body), None
        choices = document.get("choices") if type(document) is dict else None
        choice = choices[0] if type(choices) is list and choices else None
        if type(choice) is not dict:
            return self._error(BAD_RESPONSE, "the response has no choices", status, body), None
        if self._chat:
            reply = choice.get("message")
            text = reply.get("content") if type(reply) is dict else None
        else:
            text = choice.get("text")
        if type(text) is not str or not text:
            what = "message content" if self._chat else "text"
            return self._error(BAD_RESPONSE, f"the response's first choice has no {what}", status, body), None
        usage = document.get("usage")
        finish_reason = choice.get("finish_reason")
        return {
            "text": text,
            "usage": usage if type(usage) is dict else None,
            "status_code": status,
            "finish_reason": finish_reason if type(finish_reason) is str else None,
        }, None

    def _http_error(self, response: httpx.Response, body: bytes) -> dict[str, Any]:
        status = response.status_code
        if status == 429:
            kind = HTTP_429
        elif 500 <= status < 600:
            kind = HTTP_5XX
        elif 400 <= status < 500:
            kind = HTTP_4XX
        else:
            kind = BAD_RESPONSE
        detail = _server_message(body) or response.reason_phrase
        message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
        return self._error(kind, message, status, body)

    def _after_error(
        self, attempt: int, line: Any, result: dict[str, Any], headers: Mapping[str, str] | None
    ) -> tuple[TokenFlowAction, dict[str, Any], Any]:
        error = result["error"]
        kind = error["kind"]
        status = error["status_code"]
        settings = self._settings
        retry_after = parse_retry_after(headers, self._clock.time()) if headers is not None else None
        delay = retry_delay_s(attempt, retry_after, settings.backoff_base_s, settings.backoff_max_s, self._rng)
        payload = None
        if kind == HTTP_429:
            if retry_after is not None:
                payload = {"retry_after_s": retry_after}
            if self._on_rate_limit is not None:
                self._on_rate_limit(delay)
        # with a hook the job pauses on a refused key, so the request waits for the resume
        # instead of ending failed
        auth_pause = status in (401, 403) and self._on_auth_error is not None
        if auth_pause:
            self._on_auth_error(status, error["message"])
        if attempt < settings.max_attempts and (auth_pause or is_retryable(kind, status)):
            return ActionContinue(line, delay), result, payload
        return _DONE, result, payload

    def _timeout_error(self) -> dict[str, Any]:
        return self._error(TIMEOUT, f"no complete response within {self._timeout_s:g} s", None, None)

    def _error(self, kind: str, message: str, status_code: int | None, body: bytes | None) -> dict[str, Any]:
        key = self._api_key
        excerpt = None
        if body:
            # decoded with room for a whole key, so one that starts inside the excerpt is redacted
            excerpt = body[: EXCERPT_CHARS * 4 + len(key or "")].decode("utf-8", "replace")
        if key:
            # a server or proxy may echo the request back; the key must not reach a result
            message = message.replace(key, _REDACTED)
            if excerpt is not None:
                excerpt = excerpt.replace(key, _REDACTED)
        if excerpt is not None:
            excerpt = excerpt[:EXCERPT_CHARS]
        message = message[:_MESSAGE_CHARS]
        return {"error": {"kind": kind, "message": message, "status_code": status_code, "excerpt": excerpt}}


def request_body(base_body: Mapping[str, Any], line: Mapping[str, Any], chat: bool) -> dict[str, Any]:
    """The JSON body sent for an input line: `base_body` (model and [request] params), the line's params over it,
    and its messages (or its prompt as one user message; for api "completions", as the prompt)."""
    params = line.get("params")
    body = {**base_body, **params} if params else dict(base_body)
    messages = line.get("messages")
    prompt = line.get("prompt")
    if chat:
        if messages is None:
            if prompt is None:
                raise ValueError("the input line has neither 'messages' nor 'prompt'")
            messages = [{"role": "user", "content": prompt}]
        body["messages"] = messages
    else:
        if prompt is None:
            raise ValueError("the input line has no 'prompt', which api 'completions' needs")
        body["prompt"] = prompt
    return body


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _server_message(body: bytes) -> str | None:
    """The message of an OpenAI-style error body ({"error": {"message": …}}, or vLLM's {"message": …})."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict:
        return None
    error = document.get("error")
    message = error.get("message") if type(error) is dict else error
    if type(message) is not str:
        message = document.get("message") or document.get("detail")
    return message if type(message) is str and message else None

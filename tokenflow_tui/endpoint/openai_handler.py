"""The built-in handler: one attempt of a request to an OpenAI-compatible API per call (DESIGN §2.2, §6).

The engine keeps the trajectory; this handler makes the attempt, turns its outcome into a plain
JSON-able result and tells the engine whether to retry and when.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from ..engine import ActionContinue, ActionDone, Clock, SystemClock, TokenFlowAction, TokenFlowRequestTrajectory
from ..engine.error_kinds import (
    BAD_RESPONSE,
    CHECK_FAILED,
    CONNECTION,
    CUT_OFF,
    HTTP_4XX,
    HTTP_5XX,
    HTTP_429,
    TIMEOUT,
)
from ..job.model import API_PATHS, APIS, Api, RequestApi
from .checks import AnswerChecks
from .deadlines import Deadlines
from .idle import IdleTimeout, IdleTimer
from .retry_policy import Rng, is_retryable, parse_retry_after, retry_delay_s
from .rules import RetryRules
from .streamed import BadStream, StreamedAnswer, read_stream
from .transport import (
    TRANSPORT_ERRORS,
    BodyCutShort,
    ClientLike,
    chunk_reader,
    error_kind,
    failed_to_connect,
    read_body,
    response_headers,
)

EXCERPT_CHARS = 200
_MESSAGE_CHARS = 400
_REDACTED = "[api key]"
_DONE = ActionDone()
# in place of the headers of an attempt that never reached the server
_UNREACHED: Mapping[str, str] = {}
# an OpenAI Batch line's "url" chooses its API; base_url already ends in the version (…/v1)
_BATCH_APIS: dict[str, RequestApi] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
# what of the job's model and [request] params an embeddings body takes: the API refuses the others
# (max_tokens, temperature, stream), which a job of chat lines sets for them
_EMBEDDINGS_KEYS = ("model", "dimensions", "encoding_format", "user")


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    base_url: str  # the API root, e.g. https://api.openai.com/v1
    api: Api
    model: str | None  # None: each request's body names its model (OpenAI Batch input)
    params: Mapping[str, Any] = field(default_factory=dict)  # merged into every request body
    timeout_s: float = 120.0  # overall deadline of one attempt, body included
    max_attempts: int = 5  # per request, the first one included
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_body_bytes: int = 16 * 1024 * 1024
    stream: bool = False  # ask for server-sent events, with the usage in the last one
    idle_timeout_s: float | None = None  # with stream: the longest wait between two chunks

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise ValueError(f"HandlerSettings: api must be 'chat' or 'completions', got {self.api!r}")
        if self.max_attempts < 1:
            raise ValueError(f"HandlerSettings: max_attempts must be ≥ 1, got {self.max_attempts}")
        if not self.timeout_s > 0:
            raise ValueError(f"HandlerSettings: timeout_s must be > 0, got {self.timeout_s}")
        if self.idle_timeout_s is not None and not self.idle_timeout_s > 0:
            raise ValueError(f"HandlerSettings: idle_timeout_s must be > 0, got {self.idle_timeout_s}")


class OpenAIHandler:
    """`await handler(trajectory)` makes the trajectory's last attempt and returns (action, result, payload).

    The request params are an input line: `messages` or `prompt`, optional `id`, optional `params`;
    or an OpenAI Batch line, `url` and `body`: the body is sent as it is, the job's model and params
    filling only the keys it lacks, to the API the url names (chat, completions or embeddings).
    `on_rate_limit(delay_s)` hears of every 429 with the wait it implies, so a rate controller can
    slow every worker; `on_auth_error(status_code, message)` hears of every 401 and 403;
    `on_headers(headers)` sees the headers of every response (for the x-ratelimit-* ones);
    `on_tokens(n)` hears of the tokens of a streamed answer as they arrive.
    `reached()` hears of every attempt that reached the server, and `await unreached(message)` of
    every one that could not connect (refused, DNS, TLS): it may hold the attempt, or cancel it so
    that it runs again unspent (a dead server pauses the job).
    `checks` turn answers that fail the job's [checks] into check_failed errors; `rules` change the
    params of the attempt after a failed one ([[retry.rules]]).
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
        on_tokens: Callable[[int], Any] | None = None,
        reached: Callable[[], None] | None = None,
        unreached: Callable[[str], Awaitable[None]] | None = None,
        checks: AnswerChecks | None = None,
        rules: RetryRules | None = None,
    ) -> None:
        self._settings = settings
        self._checks = checks
        self._rules = rules
        self._client = client
        self._chat = settings.api == "chat"
        # parsed once: httpx would parse a string URL again on every request
        self._urls = {api: httpx.URL(settings.base_url.rstrip("/") + path) for api, path in API_PATHS.items()}
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._api_key = api_key
        self._base_body = base_body(settings.model, settings.params, settings.stream)
        self._stream = settings.stream
        self._idle_timeout_s = settings.idle_timeout_s
        self._timeout_s = settings.timeout_s
        self._deadlines = Deadlines(settings.timeout_s)
        self._max_body_bytes = settings.max_body_bytes
        self._rng: Rng = rng or random.Random()
        self._clock: Clock = clock or SystemClock()
        self._on_rate_limit = on_rate_limit
        self._on_auth_error = on_auth_error
        self._on_headers = on_headers
        self._on_tokens = on_tokens
        self._reached = reached
        self._unreached = unreached

    async def __call__(self, trajectory: TokenFlowRequestTrajectory) -> tuple[TokenFlowAction, dict[str, Any], Any]:
        line = trajectory.last().request_params
        api, body = line_body(self._base_body, line, self._chat)
        api = api or self._settings.api
        content = orjson.dumps(body)
        answer = StreamedAnswer(self._clock.monotonic()) if self._stream else None
        try:
            with self._deadlines:
                result, headers = await self._attempt(api, content, answer)
        except TimeoutError:
            result, headers = self._timeout_error(answer), None
        except asyncio.CancelledError:
            if answer is not None and answer.parts:
                # a hard stop cut the stream: the attempt keeps what came (the engine records it, see task.py)
                trajectory.last().result = self._cut_off(answer, "the stream was cut off by a hard stop")
            raise
        if headers is _UNREACHED:
            headers = None
            if self._unreached is not None:
                await self._unreached(result["error"]["message"])
        elif self._reached is not None:
            self._reached()
        if "error" not in result:
            if self._checks is None:
                return _DONE, result, None
            result = self._checks.checked(result)
            if "error" not in result:
                return _DONE, result, None
        return self._after_error(trajectory.length(), line, result, headers)

    async def _attempt(
        self, api: RequestApi, content: bytes, answer: StreamedAnswer | None
    ) -> tuple[dict[str, Any], Mapping[str, str] | None]:
        """The result of one POST, and the response headers when it failed with an HTTP status
        (`_UNREACHED` when it could not connect)."""
        url = self._urls[api]
        try:
            async with self._client.stream("POST", url, content=content, headers=self._headers) as response:
                headers = response_headers(response)
                if self._on_headers is not None:
                    self._on_headers(headers)
                if answer is not None and 200 <= response.status_code < 300 and _is_event_stream(headers):
                    return await self._streamed(response, answer, api == "chat"), None
                try:
                    body, complete = await read_body(response, self._max_body_bytes)
                except BodyCutShort as cut:
                    message = f"the response was cut short: {_describe(cut.error)}"
                    return self._error(BAD_RESPONSE, message, response.status_code, cut.partial), None
                return self._parse(api, response, headers, body, complete)
        except TRANSPORT_ERRORS as exc:
            unreached = _UNREACHED if failed_to_connect(exc) else None
            if error_kind(exc) == TIMEOUT:
                return self._timeout_error(), unreached
            return self._error(CONNECTION, f"the connection failed: {_describe(exc)}", None, None), unreached

    async def _streamed(self, response: httpx.Response, answer: StreamedAnswer, chat: bool) -> dict[str, Any]:
        """The result of a 2xx event stream: the answer, or an error that keeps the partial text."""
        answer.open = True
        status = response.status_code
        read = chunk_reader(response)
        idle = IdleTimer(self._idle_timeout_s) if self._idle_timeout_s is not None else None
        try:
            with idle if idle is not None else nullcontext():
                await read_stream(
                    read,
                    answer,
                    chat=chat,
                    monotonic=self._clock.monotonic,
                    limit=self._max_body_bytes,
                    idle=idle,
                    on_tokens=self._on_tokens,
                )
        except IdleTimeout:
            return self._cut_off(answer, f"no chunk of the stream for {self._idle_timeout_s:g} s (idle_timeout_s)")
        except BadStream as problem:
            return self._cut_off(answer, problem.message, BAD_RESPONSE, problem.excerpt)
        except TRANSPORT_ERRORS as exc:
            return self._cut_off(answer, f"the stream was cut off: {_describe(exc)}")
        if not answer.finished:
            return self._cut_off(answer, "the stream ended before the answer did (no finish reason, no [DONE])")
        if not answer.parts:
            what = "message content" if chat else "text"
            return self._cut_off(answer, f"the streamed answer has no {what}", BAD_RESPONSE)
        return {
            "text": answer.text,
            "usage": answer.usage,
            "status_code": status,
            "finish_reason": answer.finish_reason,
            "ttft_ms": answer.ttft_ms,
            "streamed_tokens": answer.tokens,
        }

    def _cut_off(
        self, answer: StreamedAnswer, message: str, kind: str = CUT_OFF, excerpt: bytes | None = None
    ) -> dict[str, Any]:
        """The error of a stream that stopped short; the text that came is kept in it (it was paid for)."""
        result = self._error(kind, message, 200, excerpt)
        result["error"]["partial"] = answer.text
        result["ttft_ms"] = answer.ttft_ms
        result["streamed_tokens"] = answer.tokens
        return result

    def _parse(
        self, api: RequestApi, response: httpx.Response, headers: Mapping[str, str], body: bytes, complete: bool
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
        if api == "embeddings":
            return self._embeddings(document, status, body), None
        chat = api == "chat"
        choices = document.get("choices") if type(document) is dict else None
        choice = choices[0] if type(choices) is list and choices else None
        if type(choice) is not dict:
            return self._error(BAD_RESPONSE, "the response has no choices", status, body), None
        if chat:
            reply = choice.get("message")
            text = reply.get("content") if type(reply) is dict else None
        else:
            text = choice.get("text")
        if type(text) is not str or not text:
            what = "message content" if chat else "text"
            return self._error(BAD_RESPONSE, f"the response's first choice has no {what}", status, body), None
        usage = document.get("usage")
        finish_reason = choice.get("finish_reason")
        return {
            "text": text,
            "usage": usage if type(usage) is dict else None,
            "status_code": status,
            "finish_reason": finish_reason if type(finish_reason) is str else None,
        }, None

    def _embeddings(self, document: Any, status: int, body: bytes) -> dict[str, Any]:
        """The vector (or, for a list of inputs, the vectors in input order) of an embeddings response."""
        data = document.get("data") if type(document) is dict else None
        if type(data) is not list or not data or any(type(d) is not dict or "embedding" not in d for d in data):
            return self._error(BAD_RESPONSE, "the response has no embeddings", status, body)
        vectors = [d["embedding"] for d in sorted(data, key=lambda d: d.get("index", 0))]
        usage = document.get("usage")
        return {
            "text": vectors[0] if len(vectors) == 1 else vectors,
            "usage": usage if type(usage) is dict else None,
            "status_code": status,
            "finish_reason": None,
        }

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
        on_auth_error = self._on_auth_error if status in (401, 403) else None
        if on_auth_error is not None:
            on_auth_error(status, error["message"])
        retry = on_auth_error is not None or is_retryable(kind, status)
        if kind == CHECK_FAILED:
            delay = 0.0  # the server is fine: only the answer was wrong
        if self._rules is not None and on_auth_error is None and attempt < settings.max_attempts:
            changed = self._rules.apply(line, error)
            if changed is not None:
                line, retry = changed, True
        if attempt < settings.max_attempts and retry:
            return ActionContinue(line, delay), result, payload
        return _DONE, result, payload

    def _timeout_error(self, answer: StreamedAnswer | None = None) -> dict[str, Any]:
        message = f"no complete response within {self._timeout_s:g} s"
        if answer is not None and answer.open:
            return self._cut_off(answer, message + " (timeout_s)")
        return self._error(TIMEOUT, message, None, None)

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


def _is_event_stream(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").partition(";")[0].strip().lower() == "text/event-stream"


def base_body(model: str | None, params: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    """What every body of a job starts from: its model, its [request] params, and the keys of a streamed answer."""
    body = {"model": model, **params} if model else dict(params)
    if stream:
        body["stream"] = True
        body.setdefault("stream_options", {"include_usage": True})
    return body


def line_body(base: Mapping[str, Any], line: Mapping[str, Any], chat: bool) -> tuple[RequestApi | None, dict[str, Any]]:
    """The JSON body sent for an input line, and the API an OpenAI Batch line's url names (None: the job's).

    A Batch line's body goes as it is, `base` filling only the keys it lacks (of them, an embeddings
    body takes only what the embeddings API knows); any other line is made by `request_body`.
    """
    batch_body = line.get("body")
    if batch_body is None:
        return None, request_body(base, line, chat)
    api = _BATCH_APIS[line["url"]]
    if api == "embeddings":
        base = {key: value for key, value in base.items() if key in _EMBEDDINGS_KEYS}
    return api, {**base, **batch_body}


def request_body(base_body: Mapping[str, Any], line: Mapping[str, Any], chat: bool) -> dict[str, Any]:
    """The JSON body sent for an input line: `base_body` (model and [request] params), the line's params over it,
    and its messages (or its prompt as one user message; for api "completions", as the prompt)."""
    params = line.get("params")
    if params:
        body = {**base_body, **params}
        body.pop("_endpoint", None)  # names the endpoint of the attempt ([[endpoints]]): not the server's
    else:
        body = dict(base_body)
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

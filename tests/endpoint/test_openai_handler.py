"""The built-in OpenAI-compatible handler and its transport, against scripted servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from aiohttp import web

from tokenflow_tui.endpoint.openai_handler import HandlerSettings, OpenAIHandler
from tokenflow_tui.endpoint.results import is_failed_result
from tokenflow_tui.endpoint.transport import TRANSPORTS, make_client
from tokenflow_tui.engine import (
    ActionContinue,
    ActionDone,
    ManualClock,
    TokenFlowRequestTrajectory,
    TokenFlowRequestTrajectoryElement,
    TokenFlowTask,
    UnexpectedUserException,
)

KEY = "sk-test-SECRET-7f3a9c0d2e"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
CHAT_OK = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
SUCCESS = {
    "text": "Hello!",
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    "status_code": 200,
    "finish_reason": "stop",
}

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    path: str
    headers: Any
    body: bytes
    peer_port: int


class ScriptedServer:
    """An aiohttp.web server on 127.0.0.1 that answers every POST with the current `route`."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.route: Route = json_reply(200, CHAT_OK)
        self.release = asyncio.Event()  # set at teardown: ends stalled and dripping responses
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername")
        self.seen.append(Seen(request.path, request.headers.copy(), await request.read(), peer[1]))
        return await self.route(request)


def json_reply(status: int, document: Any, headers: dict[str, str] | None = None) -> Route:
    body = orjson.dumps(document)

    async def route(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers={"Content-Type": "application/json", **(headers or {})})

    return route


def raw_reply(status: int, body: bytes, content_type: str) -> Route:
    async def route(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    return route


@pytest.fixture
async def server():
    scripted = ScriptedServer()
    app = web.Application()
    app.router.add_post("/{tail:.*}", scripted.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scripted.url = f"http://127.0.0.1:{port}/v1/"
    yield scripted
    scripted.release.set()
    await runner.cleanup()


@pytest.fixture(params=TRANSPORTS)
async def client(request):
    made = make_client(request.param, 8, 5.0)
    yield made
    await made.aclose()


class FixedRng:
    def random(self) -> float:
        return 0.5


def make_handler(client, base_url: str, *, api: str = "chat", key: str | None = KEY, **options: Any) -> OpenAIHandler:
    names = ("on_rate_limit", "on_auth_error", "clock", "reached", "unreached")
    hooks = {name: options.pop(name) for name in names if name in options}
    defaults = {"timeout_s": 5.0, "max_attempts": 3, "backoff_base_s": 1.0, "backoff_max_s": 8.0}
    settings = HandlerSettings(
        base_url=base_url,
        api=api,  # type: ignore[arg-type]
        model="m-1",
        params={"temperature": 0.7, "max_tokens": 16},
        **(defaults | options),
    )
    return OpenAIHandler(settings, client, key, rng=FixedRng(), **hooks)


async def attempt(handler: OpenAIHandler, line: dict[str, Any], number: int = 1):
    """Run the handler as the engine would on the `number`-th attempt of `line`."""
    trajectory = TokenFlowRequestTrajectory([TokenFlowRequestTrajectoryElement(line) for _ in range(number)])
    return await handler(trajectory)


def error(kind: str, message: str, status_code: int | None, excerpt: str | None = None) -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message, "status_code": status_code, "excerpt": excerpt}}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----- success --------------------------------------------------------------------------------


async def test_chat_success_sends_the_exact_body_and_key(server, client):
    line = {"id": 7, "messages": MESSAGES, "params": {"max_tokens": 32, "top_p": 0.9}}
    action, result, payload = await attempt(make_handler(client, server.url), line)
    assert (action, result, payload) == (ActionDone(), SUCCESS, None)
    [seen] = server.seen
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.headers["Content-Type"] == "application/json"
    # orjson's compact encoding, request params then the line's over them, messages last; no `id`
    assert seen.body == (
        b'{"model":"m-1","temperature":0.7,"max_tokens":32,"top_p":0.9,'
        b'"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}'
    )


async def test_chat_prompt_is_sent_as_one_user_message(server, client):
    action, result, _ = await attempt(make_handler(client, server.url), {"prompt": "Say hi"})
    assert (action, result) == (ActionDone(), SUCCESS)
    assert orjson.loads(server.seen[0].body) == {
        "model": "m-1",
        "temperature": 0.7,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hi"}],
    }


async def test_completions_success_and_length_finish_is_still_a_success(server, client):
    server.route = raw_reply(
        200,
        orjson.dumps({"choices": [{"index": 0, "text": " upon a time", "finish_reason": "length"}]}),
        "application/json; charset=utf-8",
    )
    handler = make_handler(client, server.url.rstrip("/"), api="completions", key=None)
    action, result, payload = await attempt(handler, {"prompt": "Once", "params": {"stop": ["\n"]}})
    assert (action, payload) == (ActionDone(), None)
    assert result == {"text": " upon a time", "usage": None, "status_code": 200, "finish_reason": "length"}
    [seen] = server.seen
    assert seen.path == "/v1/completions"
    assert "Authorization" not in seen.headers
    assert seen.body == b'{"model":"m-1","temperature":0.7,"max_tokens":16,"stop":["\\n"],"prompt":"Once"}'


async def test_a_line_without_prompt_or_messages_raises_a_clear_error(server, client):
    with pytest.raises(ValueError, match="neither 'messages' nor 'prompt'"):
        await attempt(make_handler(client, server.url), {"id": 1})
    with pytest.raises(ValueError, match="no 'prompt'"):
        await attempt(make_handler(client, server.url, api="completions"), {"messages": MESSAGES})
    assert server.seen == []


# ----- HTTP errors ----------------------------------------------------------------------------

RATE_LIMITED = {"error": {"message": "Rate limit reached", "type": "requests"}}
CLOCK = ManualClock(start=1_000.0, wall_offset=1_700_000_000.0)
IN_20_S = format_datetime(datetime.fromtimestamp(CLOCK.time() + 20, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("headers", "delay", "payload"),
    [
        ({"retry-after-ms": "2500"}, 2.5, {"retry_after_s": 2.5}),
        ({"Retry-After": "3"}, 3.0, {"retry_after_s": 3.0}),
        ({"Retry-After": IN_20_S}, 20.0, {"retry_after_s": 20.0}),
        ({"Retry-After": "999999"}, 300.0, {"retry_after_s": 300.0}),  # absurd: clamped
        ({"Retry-After": "0"}, 0.5, {"retry_after_s": 0.0}),  # the backoff is longer
        ({"Retry-After": "whenever"}, 0.5, None),  # garbage: the backoff alone
        ({}, 0.5, None),
    ],
)
async def test_429_retries_after_what_the_server_asked(server, client, headers, delay, payload):
    server.route = json_reply(429, RATE_LIMITED, headers)
    heard: list[float] = []
    handler = make_handler(client, server.url, on_rate_limit=heard.append, clock=CLOCK)
    line = {"messages": MESSAGES}
    action, result, got_payload = await attempt(handler, line)
    assert action == ActionContinue(line, delay)
    assert action.continue_params is line
    assert result == error("http_429", "HTTP 429: Rate limit reached", 429, orjson.dumps(RATE_LIMITED).decode())
    assert got_payload == payload
    assert heard == [delay]


async def test_500_retries_with_backoff(server, client):
    server.route = raw_reply(500, b"oops", "text/plain")
    line = {"messages": MESSAGES}
    heard: list[float] = []
    action, result, payload = await attempt(make_handler(client, server.url, on_rate_limit=heard.append), line, 2)
    assert (action, payload) == (ActionContinue(line, 1.0), None)  # 0.5 · min(8, 1·2¹)
    assert result == error("http_5xx", "HTTP 500: Internal Server Error", 500, "oops")
    assert heard == []


async def test_503_honours_retry_after_without_a_rate_limit_signal(server, client):
    server.route = json_reply(503, {"message": "overloaded"}, {"Retry-After": "4"})
    heard: list[float] = []
    line = {"messages": MESSAGES}
    action, result, payload = await attempt(make_handler(client, server.url, on_rate_limit=heard.append), line)
    assert (action, payload) == (ActionContinue(line, 4.0), None)
    assert result == error("http_5xx", "HTTP 503: overloaded", 503, '{"message":"overloaded"}')
    assert heard == []


@pytest.mark.parametrize("status", [408, 409])
async def test_408_and_409_are_retried(server, client, status):
    server.route = raw_reply(status, b"", "text/plain")
    line = {"messages": MESSAGES}
    action, result, _ = await attempt(make_handler(client, server.url), line)
    assert action == ActionContinue(line, 0.5)
    assert result["error"]["kind"] == "http_4xx"
    assert result["error"]["status_code"] == status
    assert result["error"]["excerpt"] is None


async def test_400_is_not_retried(server, client):
    body = {"error": {"message": "This model's maximum context length is 8192 tokens.", "code": "context_length"}}
    server.route = json_reply(400, body)
    auth: list[tuple[int, str]] = []
    handler = make_handler(client, server.url, on_auth_error=lambda *args: auth.append(args))
    action, result, payload = await attempt(handler, {"prompt": "x"})
    assert (action, payload) == (ActionDone(), None)
    assert result == error(
        "http_4xx", "HTTP 400: This model's maximum context length is 8192 tokens.", 400, orjson.dumps(body).decode()
    )
    assert auth == []


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_reported_and_wait_for_the_resume_when_the_job_pauses(server, client, status):
    server.route = json_reply(status, {"error": {"message": "Incorrect API key provided: sk-****9c0d."}})
    auth: list[tuple[int, str]] = []
    handler = make_handler(client, server.url, on_auth_error=lambda *args: auth.append(args))
    line = {"prompt": "x"}
    action, result, _ = await attempt(handler, line)
    # the hook pauses the job: the request goes back to the queue rather than failing
    assert type(action) is ActionContinue and action.continue_params is line
    assert result["error"]["kind"] == "http_4xx"
    assert auth == [(status, f"HTTP {status}: Incorrect API key provided: sk-****9c0d.")]
    action, _, _ = await attempt(handler, line, 5)  # but not past the job's attempts
    assert action == ActionDone()


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_without_a_hook_are_not_retried(server, client, status):
    server.route = json_reply(status, {"error": {"message": "Incorrect API key provided."}})
    action, result, _ = await attempt(make_handler(client, server.url), {"prompt": "x"})
    assert action == ActionDone()
    assert result["error"]["status_code"] == status


async def test_the_last_attempt_ends_the_request_with_its_error(server, client):
    server.route = raw_reply(502, b"bad gateway", "text/plain")
    action, result, _ = await attempt(make_handler(client, server.url), {"prompt": "x"}, 3)
    assert action == ActionDone()
    assert result == error("http_5xx", "HTTP 502: Bad Gateway", 502, "bad gateway")


# ----- transport failures ---------------------------------------------------------------------


async def test_connection_refused(client):
    line = {"prompt": "x"}
    action, result, _ = await attempt(make_handler(client, f"http://127.0.0.1:{closed_port()}/v1"), line)
    assert action == ActionContinue(line, 0.5)
    assert result["error"]["kind"] == "connection"
    assert result["error"]["message"].startswith("the connection failed: ")
    assert (result["error"]["status_code"], result["error"]["excerpt"]) == (None, None)


class Reach:
    """The dead-server hooks, recorded: which attempts reached the server and which could not connect."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    def reached(self) -> None:
        self.heard.append("reached")

    async def unreached(self, message: str) -> None:
        self.heard.append(f"unreached: {message}")


async def test_a_refused_connection_did_not_reach_the_server_but_a_hang_up_and_an_http_error_did(server, client):
    reach = Reach()
    hooks = {"reached": reach.reached, "unreached": reach.unreached}
    await attempt(make_handler(client, f"http://127.0.0.1:{closed_port()}/v1", **hooks), {"prompt": "x"})
    assert len(reach.heard) == 1 and reach.heard[0].startswith("unreached: the connection failed: ")

    async def hang_up(request: web.Request) -> web.StreamResponse:
        request.transport.close()
        return web.Response()

    server.route = hang_up
    await attempt(make_handler(client, server.url, **hooks), {"prompt": "x"})
    server.route = raw_reply(502, b"bad gateway", "text/plain")
    await attempt(make_handler(client, server.url, **hooks), {"prompt": "x"})
    assert reach.heard[1:] == ["reached", "reached"]


async def test_server_closing_before_answering_is_a_connection_error(server, client):
    async def hang_up(request: web.Request) -> web.StreamResponse:
        request.transport.close()
        return web.Response()

    server.route = hang_up
    action, result, _ = await attempt(make_handler(client, server.url), {"prompt": "x"})
    assert type(action) is ActionContinue
    assert result["error"]["kind"] == "connection"


async def test_connection_closed_mid_body_is_a_bad_response(server, client):
    async def cut_short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "500"})
        await response.prepare(request)
        await response.write(b'{"choices": [{"message": ')
        request.transport.close()
        return response

    server.route = cut_short
    action, result, _ = await attempt(make_handler(client, server.url), {"prompt": "x"})
    assert type(action) is ActionContinue
    assert result["error"]["kind"] == "bad_response"
    assert result["error"]["message"].startswith("the response was cut short: ")
    assert result["error"]["status_code"] == 200
    assert result["error"]["excerpt"] == '{"choices": [{"message": '  # what arrived, as the README promises


async def test_a_stalled_server_times_out_at_the_deadline(server, client):
    async def stall(request: web.Request) -> web.StreamResponse:
        await server.release.wait()
        return web.Response()

    server.route = stall
    started = time.perf_counter()
    action, result, _ = await attempt(make_handler(client, server.url, timeout_s=0.3), {"prompt": "x"})
    elapsed = time.perf_counter() - started
    assert result == error("timeout", "no complete response within 0.3 s", None)
    assert type(action) is ActionContinue
    assert 0.25 <= elapsed < 1.5


async def test_a_slow_drip_body_times_out_at_the_deadline(server, client):
    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "1000"})
        await response.prepare(request)
        for _ in range(200):  # a byte every 50 ms: no single read ever waits long
            await response.write(b" ")
            try:
                await asyncio.wait_for(server.release.wait(), 0.05)
                break
            except TimeoutError:
                pass
        return response

    server.route = drip
    started = time.perf_counter()
    action, result, _ = await attempt(make_handler(client, server.url, timeout_s=0.3), {"prompt": "x"})
    elapsed = time.perf_counter() - started
    assert result == error("timeout", "no complete response within 0.3 s", None)
    assert type(action) is ActionContinue
    assert 0.25 <= elapsed < 1.5


# ----- bad responses --------------------------------------------------------------------------

HTML = "text/html; charset=utf-8"
NO_CONTENT = "the response's first choice has no message content"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"choices": [{"mess', "application/json", "the response body is not valid JSON"),
        (b"<html>busy</html>", HTML, f"the response is not JSON (content type {HTML!r})"),
        (b'{"choices": []}', "application/json", "the response has no choices"),
        (b'{"object": "error"}', "application/json", "the response has no choices"),
        (b"[1, 2]", "application/json", "the response has no choices"),
        (b'{"choices": [{"message": {"role": "assistant", "content": null}}]}', "application/json", NO_CONTENT),
        (b'{"choices": [{"message": {"role": "assistant", "content": ""}}]}', "application/json", NO_CONTENT),
        (b'{"choices": [{"finish_reason": "stop"}]}', "application/json", NO_CONTENT),
    ],
)
async def test_bad_responses_are_retried_with_an_excerpt(server, client, body, content_type, message):
    server.route = raw_reply(200, body, content_type)
    line = {"prompt": "x"}
    action, result, payload = await attempt(make_handler(client, server.url), line)
    assert (action, payload) == (ActionContinue(line, 0.5), None)
    assert result == error("bad_response", message, 200, body.decode())


async def test_the_excerpt_is_the_first_200_characters(server, client):
    body = ("é" * 300).encode()
    server.route = raw_reply(200, body, "text/plain")
    _, result, _ = await attempt(make_handler(client, server.url), {"prompt": "x"})
    assert result["error"]["excerpt"] == "é" * 200


class Flood:
    """A route sending a body far over the cap, recording how much it managed to send."""

    def __init__(self, declare_length: bool) -> None:
        self.declare_length = declare_length
        self.total = 256 * 1024 * 1024
        self.sent = 0
        self.finished = asyncio.Event()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json"}
        if self.declare_length:
            headers["Content-Length"] = str(self.total)
        response = web.StreamResponse(headers=headers)
        chunk = b"x" * 65536
        try:
            await response.prepare(request)
            for _ in range(self.total // len(chunk)):
                await response.write(chunk)
                self.sent += len(chunk)
        except ConnectionError:
            pass  # the client hung up, as it should
        finally:
            self.finished.set()
        return response


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
async def test_a_huge_body_is_refused_without_being_read(server, client, declare_length):
    flood = Flood(declare_length)
    server.route = flood
    line = {"prompt": "x"}
    action, result, _ = await attempt(make_handler(client, server.url, max_body_bytes=100_000), line)
    assert action == ActionContinue(line, 0.5)
    excerpt = None if declare_length else "x" * 200  # a declared size is refused before any read
    assert result == error("bad_response", "the response body is larger than the 100000 bytes allowed", 200, excerpt)
    await asyncio.wait_for(flood.finished.wait(), 10)
    assert flood.sent < flood.total // 4


# ----- secrets --------------------------------------------------------------------------------


async def test_the_key_never_reaches_a_result(server, client):
    async def echo_auth(request: web.Request) -> web.StreamResponse:
        auth = request.headers["Authorization"]
        return web.json_response({"error": {"message": f"bad header {auth}"}}, status=400)

    async def echo_auth_body(request: web.Request) -> web.StreamResponse:
        return web.Response(text="x" * 195 + request.headers["Authorization"], content_type="text/plain")

    handler = make_handler(client, server.url)
    results = []
    for route in (echo_auth, echo_auth_body):
        server.route = route
        results.append((await attempt(handler, {"prompt": "x"}))[1])
    refused = make_handler(client, f"http://127.0.0.1:{closed_port()}/v1")
    results.append((await attempt(refused, {"prompt": "x"}))[1])
    assert results[0]["error"]["message"] == "HTTP 400: bad header Bearer [api key]"
    assert results[1]["error"]["excerpt"] == "x" * 195 + "Beare"
    dumped = orjson.dumps(results).decode()
    assert KEY not in dumped
    assert KEY[:12] not in dumped


# ----- transport ------------------------------------------------------------------------------


def test_make_client_rejects_an_unknown_transport():
    with pytest.raises(ValueError, match="transport must be one of asyncio, aiohttp, httpx, got 'curl'"):
        make_client("curl", 4, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_pool_holds_max_connections_in_flight_and_keeps_them_alive(server, transport):
    limit = 40  # split httpx: pools of 14, 13 and 13
    in_flight = 0
    peak = 0
    everyone_in = asyncio.Event()
    gate = asyncio.Event()

    async def gated(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == limit:
            everyone_in.set()
        await gate.wait()
        in_flight -= 1
        return web.json_response(CHAT_OK)

    server.route = gated
    client = make_client(transport, limit, 5.0)
    try:
        handler = make_handler(client, server.url)
        for _ in range(2):  # the second round must reuse the first round's connections
            everyone_in.clear()
            gate.clear()
            calls = [asyncio.ensure_future(attempt(handler, {"prompt": "x"})) for _ in range(limit + 1)]
            await asyncio.wait_for(everyone_in.wait(), 10)
            gate.set()
            outcomes = await asyncio.gather(*calls)
            assert [result for _, result, _ in outcomes] == [SUCCESS] * (limit + 1)
    finally:
        await client.aclose()
    assert peak == limit
    first_round = {seen.peer_port for seen in server.seen[: limit + 1]}
    second_round = {seen.peer_port for seen in server.seen[limit + 1 :]}
    assert len(first_round) == limit
    assert second_round <= first_round


# ----- with the engine ------------------------------------------------------------------------


def flaky_plan(index: int) -> list[str]:
    """What the flaky server answers to each attempt of request `index`, the last one repeating."""
    kind = index % 5
    if kind == 0:
        return ["ok"]
    if kind == 1:
        return ["429", "ok"]
    if kind == 2:
        return ["500", "hang_up", "ok"]
    if kind == 3:
        return ["malformed", "503", "408", "ok"]
    return ["500"] if index % 10 == 4 else ["400"]


async def flaky_answer(request: web.Request, step: str) -> web.StreamResponse:
    if step == "ok":
        return web.json_response(CHAT_OK)
    if step == "429":
        return web.json_response(RATE_LIMITED, status=429, headers={"retry-after-ms": "0"})
    if step == "hang_up":
        request.transport.close()
        return web.Response()
    if step == "malformed":
        return web.Response(body=b'{"choi', content_type="application/json")
    return web.json_response({"error": {"message": step}}, status=int(step))


async def test_the_engine_finishes_every_request_once_against_a_flaky_server(server, client):
    count = 300
    attempts_seen = [0] * count

    async def flaky(request: web.Request) -> web.StreamResponse:
        index = int(orjson.loads(await request.read())["messages"][0]["content"])
        plan = flaky_plan(index)
        step = plan[min(attempts_seen[index], len(plan) - 1)]
        attempts_seen[index] += 1
        return await flaky_answer(request, step)

    server.route = flaky
    handler = make_handler(client, server.url, max_attempts=4, backoff_base_s=0.0)
    lines = [{"prompt": str(i)} for i in range(count)]
    task = TokenFlowTask(handler, lines, is_failure=is_failed_result)
    task.run(n_workers=32)
    finished = await asyncio.wait_for(task.wait_for_done(), 60)

    assert [request.id for request in finished] == list(range(count))
    for request in finished:
        plan = flaky_plan(request.id)
        trajectory = request.request_trajectory.trajectory
        expected_length = 4 if plan == ["500"] else len(plan)
        assert len(trajectory) == expected_length, request.id
        assert attempts_seen[request.id] == expected_length
        assert all(type(element.action) is ActionContinue for element in trajectory[:-1])
        assert type(trajectory[-1].action) is ActionDone
        last = trajectory[-1].result
        if plan[-1] == "ok":
            assert last == SUCCESS
        else:
            assert last["error"]["status_code"] == int(plan[-1])
    stats = task.stats()
    assert (stats.done, stats.failed) == (240, 60)
    assert stats.attempts == sum(attempts_seen)


def test_a_failed_result_is_an_error_or_an_exception_of_the_handler():
    assert is_failed_result({"error": {"kind": "timeout", "message": "", "status_code": None, "excerpt": None}})
    assert is_failed_result(UnexpectedUserException("ValueError: no prompt", "Traceback …"))
    assert not is_failed_result({"text": "hello", "usage": None, "status_code": 200, "finish_reason": "stop"})
    assert not is_failed_result("error")

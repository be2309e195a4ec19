"""Streamed answers (`[endpoint] stream = true`): the SSE reader, the idle timer, and the handler against the
simulator in a child process with every mid-stream fault, and against scripted servers for the odd cases."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from tokenflow_tui.endpoint.idle import IdleTimeout, IdleTimer
from tokenflow_tui.endpoint.openai_handler import HandlerSettings, OpenAIHandler
from tokenflow_tui.endpoint.sse import EventReader
from tokenflow_tui.endpoint.transport import TRANSPORTS, make_client
from tokenflow_tui.engine import (
    ActionContinue,
    ActionDone,
    TokenFlowRequestTrajectory,
    TokenFlowRequestTrajectoryElement,
    TokenFlowTask,
)
from tokenflow_tui.sim import SimulatorConfig, SimulatorProcess

PROMPT = "tell me about item 0"
ANSWER = "Echo: tell me about item 0"
# the simulator cuts a stream halfway through its events: for this prompt, after four words in both APIs
HALF = "Echo: tell me about "
USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


class TickClock:
    """Each reading of the monotonic clock is one second after the last: a TTFT is an exact count of readings."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the handler does not sleep")


def make_handler(client: Any, base_url: str, *, api: str = "chat", **options: Any) -> tuple[OpenAIHandler, list[int]]:
    """A streaming handler with a ticking clock, and the list its on_tokens calls go to."""
    heard: list[int] = []
    settings = HandlerSettings(
        base_url=base_url,
        api=api,  # type: ignore[arg-type]
        model="m-1",
        params={"max_tokens": 64},
        stream=True,
        **({"timeout_s": 5.0, "max_attempts": 2, "backoff_base_s": 0.0} | options),
    )
    return OpenAIHandler(settings, client, None, clock=TickClock(), on_tokens=heard.append), heard


async def attempt(handler: OpenAIHandler, line: dict[str, Any], number: int = 1) -> tuple[Any, dict[str, Any], Any]:
    trajectory = TokenFlowRequestTrajectory([TokenFlowRequestTrajectoryElement(line) for _ in range(number)])
    return await handler(trajectory)


def cut_off(message: str, partial: str, tokens: int = 4, ttft_ms: float | None = 1000.0) -> dict[str, Any]:
    error = {"kind": "cut_off", "message": message, "status_code": 200, "excerpt": None, "partial": partial}
    return {"error": error, "ttft_ms": ttft_ms, "streamed_tokens": tokens}


# ----- the SSE reader ---------------------------------------------------------------------------

STREAM = b'data: {"a": 1}\n\n: a comment\nevent: message\nid: 3\ndata: {"b": 2}\r\n\r\ndata: one\ndata: two\n\ndata: [DONE]\n\n'


def test_events_come_out_whole_however_the_bytes_are_split():
    expected = [b'{"a": 1}', b'{"b": 2}', b"one\ntwo", b"[DONE]"]
    reader = EventReader()
    assert reader.feed(STREAM) + reader.end() == expected
    for cut in range(1, len(STREAM)):
        reader = EventReader()
        assert reader.feed(STREAM[:cut]) + reader.feed(STREAM[cut:]) + reader.end() == expected, cut
    reader = EventReader()
    assert [event for byte in range(len(STREAM)) for event in reader.feed(STREAM[byte : byte + 1])] == expected


def test_an_event_the_stream_ends_in_without_its_blank_line_is_still_read():
    reader = EventReader()
    assert reader.feed(b'data: {"a": 1}\n\ndata:{"b": 2}') == [b'{"a": 1}']
    assert reader.end() == [b'{"b": 2}']
    assert reader.end() == []


# ----- the idle timer ---------------------------------------------------------------------------


async def test_the_idle_timer_fires_only_after_a_silence_and_leaves_other_cancellations_alone():
    arrivals = asyncio.Queue[bytes]()

    async def reader(idle_s: float) -> list[bytes]:
        got = []
        with IdleTimer(idle_s) as idle:
            while (item := await arrivals.get()) != b"end":
                idle.touch()
                got.append(item)
        return got

    # every arrival comes well within the idle time: the timer, moved lazily, never fires
    task = asyncio.create_task(reader(30.0))
    for item in (b"a", b"b", b"c", b"end"):
        arrivals.put_nowait(item)
    assert await task == [b"a", b"b", b"c"]
    # silence: IdleTimeout, and the task is not left with a pending cancellation
    task = asyncio.create_task(reader(0.01))
    with pytest.raises(IdleTimeout):
        await task
    assert task.cancelling() == 0
    # a cancellation from elsewhere stays a cancellation
    task = asyncio.create_task(reader(30.0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ----- against the simulator in a child process ------------------------------------------------


async def with_simulator(fault: str | None, check: Any, **config: Any) -> None:
    """Run `check(client, base_url, api)` for both APIs and both transports against a simulator with `fault`."""
    settings = SimulatorConfig(latency_ms=0, token_interval_ms=1, fail={fault: 1.0} if fault else {}, **config)
    async with SimulatorProcess(settings) as simulator:
        for transport in TRANSPORTS:
            client = make_client(transport, 4, 5.0)
            try:
                for api in ("chat", "completions"):
                    await check(client, simulator.base_url, api)
            finally:
                await client.aclose()


def line_for(api: str) -> dict[str, Any]:
    return {"prompt": PROMPT} if api == "completions" else {"messages": [{"role": "user", "content": PROMPT}]}


async def test_a_whole_stream_gives_the_text_usage_and_time_to_first_token():
    async def check(client: Any, base_url: str, api: str) -> None:
        handler, heard = make_handler(client, base_url, api=api, idle_timeout_s=5.0)
        action, result, payload = await attempt(handler, line_for(api))
        expected = {
            "text": ANSWER,
            "usage": USAGE,
            "status_code": 200,
            "finish_reason": "stop",
            "ttft_ms": 1000.0,  # the attempt's start and its first token are the clock's first two readings
            "streamed_tokens": 6,
        }
        assert (action, result, payload) == (ActionDone(), expected, None), api
        assert sum(heard) == 6

    await with_simulator(None, check)


async def test_a_stream_without_done_is_whole_once_its_finish_reason_came():
    async def check(client: Any, base_url: str, api: str) -> None:
        handler, _ = make_handler(client, base_url, api=api)
        action, result, _ = await attempt(handler, line_for(api))
        assert (action, result["text"], result["usage"]) == (ActionDone(), ANSWER, USAGE)

    await with_simulator("no_done", check)


@pytest.mark.parametrize("fault", ["reset", "truncated"])
async def test_a_stream_cut_by_the_server_keeps_its_partial_text_and_is_retried(fault):
    async def check(client: Any, base_url: str, api: str) -> None:
        handler, heard = make_handler(client, base_url, api=api)
        action, result, _ = await attempt(handler, line_for(api))
        assert action == ActionContinue(line_for(api), 0.0)
        assert result["error"]["kind"] == "cut_off"
        assert result["error"]["message"].startswith("the stream was cut off: ")
        assert result == cut_off(result["error"]["message"], HALF)
        assert sum(heard) == 4
        # the last attempt allowed ends the request with the partial text in its error
        action, result, _ = await attempt(handler, line_for(api), number=2)
        assert (action, result["error"]["partial"]) == (ActionDone(), HALF)

    await with_simulator(fault, check)


async def test_a_stalled_stream_ends_at_the_idle_timeout_with_its_partial_text():
    async def check(client: Any, base_url: str, api: str) -> None:
        handler, _ = make_handler(client, base_url, api=api, idle_timeout_s=0.05, timeout_s=60.0)
        _, result, _ = await attempt(handler, line_for(api))
        assert result == cut_off("no chunk of the stream for 0.05 s (idle_timeout_s)", HALF)

    await with_simulator("stall", check, stall_s=60.0)


async def test_without_an_idle_timeout_a_stalled_stream_ends_at_the_attempts_deadline():
    async def check(client: Any, base_url: str, api: str) -> None:
        handler, _ = make_handler(client, base_url, api=api, timeout_s=0.2)
        _, result, _ = await attempt(handler, line_for(api))
        assert result == cut_off("no complete response within 0.2 s (timeout_s)", HALF)

    await with_simulator("stall", check, stall_s=60.0)


async def test_a_malformed_chunk_is_a_bad_response_that_keeps_the_partial_text():
    async def check(client: Any, base_url: str, api: str) -> None:
        handler, _ = make_handler(client, base_url, api=api)
        action, result, _ = await attempt(handler, line_for(api))
        assert isinstance(action, ActionContinue)
        excerpt = '{"id": "chatcmpl-sim", "object": "chat.completion.chunk", "choi'
        error = result["error"]
        assert (error["kind"], error["message"], error["excerpt"], error["partial"]) == (
            "bad_response",
            "a chunk of the stream is not valid JSON",
            excerpt,
            HALF,
        )

    await with_simulator("malformed", check)


async def test_faults_before_the_stream_are_answered_as_for_any_request():
    async def check(client: Any, base_url: str, api: str) -> None:
        handler, heard = make_handler(client, base_url, api=api)
        _, result, _ = await attempt(handler, line_for(api))
        assert (result["error"]["kind"], result["error"]["status_code"], "ttft_ms" in result) == (
            "http_5xx",
            500,
            False,
        )
        assert heard == []

    await with_simulator("500", check)


# ----- against scripted servers ----------------------------------------------------------------


@pytest.fixture
async def scripted():
    """An aiohttp.web server on 127.0.0.1; `routes.append(handler)` answers the next POST."""
    routes: list[Any] = []
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.read())
        return await routes.pop(0)(request)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1", routes, bodies
    await runner.cleanup()


def sse(*events: bytes, hold: asyncio.Event | None = None) -> Any:
    async def route(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        if hold is not None:
            await hold.wait()
        return response

    return route


def chunk(**fields: Any) -> bytes:
    return b"data: " + orjson.dumps(fields) + b"\r\n\r\n"


@pytest.fixture(params=TRANSPORTS)
async def client(request):
    made = make_client(request.param, 4, 5.0)
    yield made
    await made.aclose()


async def test_the_request_asks_for_a_stream_with_usage_and_crlf_events_are_read(scripted, client):
    base_url, routes, bodies = scripted
    routes.append(
        sse(
            chunk(choices=[{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]),
            chunk(choices=[{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]),
            chunk(choices=[{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]),
            chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
            b"data: [DONE]\r\n\r\n",
        )
    )
    handler, heard = make_handler(client, base_url)
    _, result, _ = await attempt(handler, {"prompt": "hi"})
    assert result == {
        "text": "Hello",
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "status_code": 200,
        "finish_reason": "stop",
        "ttft_ms": 1000.0,
        "streamed_tokens": 2,
    }
    assert bodies == [
        b'{"model":"m-1","max_tokens":64,"stream":true,"stream_options":{"include_usage":true},'
        b'"messages":[{"role":"user","content":"hi"}]}'
    ]
    assert sum(heard) == 2


async def test_an_error_event_mid_stream_is_a_bad_response_with_the_partial_text(scripted, client):
    base_url, routes, _ = scripted
    routes.append(
        sse(
            chunk(choices=[{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]),
            chunk(error={"message": "the model crashed", "type": "server_error"}),
        )
    )
    handler, _ = make_handler(client, base_url)
    _, result, _ = await attempt(handler, {"prompt": "hi"})
    error = result["error"]
    assert (error["kind"], error["message"], error["partial"]) == (
        "bad_response",
        "the server sent an error in the stream: the model crashed",
        "Hel",
    )


async def test_a_stream_that_ends_early_is_cut_off_and_an_idle_one_before_any_token_too(scripted, client):
    base_url, routes, _ = scripted
    routes.append(sse(chunk(choices=[{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}])))
    handler, _ = make_handler(client, base_url)
    _, result, _ = await attempt(handler, {"prompt": "hi"})
    assert result == cut_off("the stream ended before the answer did (no finish reason, no [DONE])", "Hel", tokens=1)
    hold = asyncio.Event()
    routes.append(sse(hold=hold))
    handler, _ = make_handler(client, base_url, idle_timeout_s=0.05)
    _, result, _ = await attempt(handler, {"prompt": "hi"})
    hold.set()
    assert result == cut_off("no chunk of the stream for 0.05 s (idle_timeout_s)", "", tokens=0, ttft_ms=None)


async def test_a_json_answer_to_a_stream_request_is_read_as_json(scripted, client):
    base_url, routes, _ = scripted
    document = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }

    async def route(request: web.Request) -> web.StreamResponse:
        return web.json_response(document)

    routes.append(route)
    handler, _ = make_handler(client, base_url)
    action, result, _ = await attempt(handler, {"prompt": "hi"})
    assert (action, result) == (
        ActionDone(),
        {"text": "Hi", "usage": document["usage"], "status_code": 200, "finish_reason": "stop"},
    )


async def test_a_hard_stop_mid_stream_keeps_the_partial_text_as_an_attempt_and_runs_the_request_again(scripted, client):
    base_url, routes, _ = scripted
    hold = asyncio.Event()
    routes.append(sse(chunk(choices=[{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]), hold=hold))
    routes.append(
        sse(
            chunk(choices=[{"index": 0, "delta": {"content": "Hello"}, "finish_reason": "stop"}]),
            b"data: [DONE]\r\n\r\n",
        )
    )
    first_token = asyncio.Event()
    settings = HandlerSettings(base_url=base_url, api="chat", model="m-1", params={}, stream=True, timeout_s=5.0)
    handler = OpenAIHandler(settings, client, None, clock=TickClock(), on_tokens=lambda n: first_token.set())
    task = TokenFlowTask(request_fn=handler, request_params=[{"prompt": "hi"}])
    task.run(n_workers=1)
    await asyncio.wait_for(first_token.wait(), 5)
    await task.hard_stop()
    hold.set()
    task.run(n_workers=1)
    [request] = await asyncio.wait_for(task.wait_for_done(), 5)
    cut, answer = request.request_trajectory.trajectory
    assert cut.result == cut_off("the stream was cut off by a hard stop", "Hel", tokens=1)
    assert cut.action == ActionContinue({"prompt": "hi"}) and cut.latency_s is not None
    assert (answer.result["text"], type(answer.action)) == ("Hello", ActionDone)
    assert task.stats().attempts == 2

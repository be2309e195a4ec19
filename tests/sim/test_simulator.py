"""The simulator over real loopback HTTP: endpoints, answers, streaming, faults, limits, auth, close."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from tokenflow_tui.engine.clock import ManualClock
from tokenflow_tui.sim import Simulator, SimulatorConfig
from tokenflow_tui.sim.answers import embedding
from tokenflow_tui.sim.connection import DRIP_BYTES, Connection, How, Reply
from tokenflow_tui.sim.draws import FaultDraw
from tokenflow_tui.sim.faults import HTML_BODY, MALFORMED_BODY
from tokenflow_tui.sim.http import Request

pytestmark = pytest.mark.timeout(20)

WALL = 1_700_001_000  # ManualClock().time() when nothing has advanced it


class Watched(Simulator):
    """A simulator that tells the test when a request arrives, what it replies, and when a connection is gone.

    Delays (latency, drip, stall) are timers of the event loop: a test reads the reply's plan
    instead of timing the answer.
    """

    def __init__(self, config: SimulatorConfig, clock: ManualClock) -> None:
        super().__init__(config, clock=clock)
        self.received = asyncio.Event()
        self.gone = asyncio.Event()
        self.replies: list[Reply] = []

    def reply(self, request: Request) -> Reply:
        self.received.set()
        reply = super().reply(request)
        self.replies.append(reply)
        return reply

    def lost(self, connection: Connection) -> None:
        super().lost(connection)
        self.gone.set()


Serve = Callable[..., Awaitable[Watched]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    started: list[Watched] = []

    async def start(clock: ManualClock | None = None, **knobs: Any) -> Watched:
        knobs.setdefault("latency_ms", 0)
        sim = Watched(SimulatorConfig(**knobs), clock=clock or ManualClock())
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Plain HTTP on loopback: verify=False only skips loading the CA bundle (about 80 ms a client).
    async with httpx.AsyncClient(timeout=5, verify=False) as client:
        yield client


def chat(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}


def error(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def raw_post(path: str, body: bytes, headers: bytes = b"Connection: close\r\n") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: sim\r\nContent-Length: %d\r\n%s\r\n%s" % (
        path.encode(),
        len(body),
        headers,
        body,
    )


async def exchange(sim: Simulator, data: bytes) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    try:
        writer.write(data)
        return await reader.read()
    finally:
        writer.close()


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


# Endpoints and answers


async def test_chat_answer_is_openai_shaped_and_echoes_the_last_user_message(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    sim = await serve()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there, simulator"}]
    body = {"model": "gpt-test", "messages": messages}
    response = await client.post(f"{sim.base_url}/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "id": "chatcmpl-sim-1",
        "object": "chat.completion",
        "created": WALL,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Echo: Hello there, simulator"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        # 9 + 22 prompt characters -> 8 tokens; 28 answer characters -> 7 tokens
        "usage": {"prompt_tokens": 8, "completion_tokens": 7, "total_tokens": 15},
    }
    assert sim.stats.paths == Counter({"/v1/chat/completions": 1})
    assert sim.stats.outcomes == Counter({"ok": 1})


async def test_chat_content_parts_are_joined_and_the_last_user_message_wins(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    sim = await serve()
    image = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    parts = [{"type": "text", "text": "look at"}, image, {"type": "text", "text": "this"}]
    messages = [
        {"role": "user", "content": "first"},
        {"role": "user", "content": parts},
        {"role": "assistant", "content": "later"},
    ]
    response = await client.post(f"{sim.base_url}/chat/completions", json={"model": "m", "messages": messages})
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] == "Echo: look at\nthis"
    # 5 + 12 + 5 prompt characters -> 6 tokens; 18 answer characters -> 5 tokens
    assert answer["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}


async def test_completions_answer_echoes_the_prompt(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve()
    response = await client.post(f"{sim.base_url}/completions", json={"model": "text-test", "prompt": "abcde"})
    assert response.json() == {
        "id": "cmpl-sim-1",
        "object": "text_completion",
        "created": WALL,
        "model": "text-test",
        "choices": [{"index": 0, "text": "Echo: abcde", "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    }


async def test_an_empty_prompt_still_counts_one_token(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve()
    response = await client.post(f"{sim.base_url}/completions", json={"model": "m", "prompt": ""})
    assert response.json()["choices"][0]["text"] == "Echo: "
    assert response.json()["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


@pytest.mark.parametrize(
    ("max_tokens", "content", "finish_reason", "completion_tokens"),
    [
        (3, "Echo: one two", "length", 4),
        (5, "Echo: one two three four", "stop", 6),
        (50, "Echo: one two three four", "stop", 6),
    ],
)
async def test_max_tokens_cuts_the_answer_to_that_many_words(
    serve: Serve, client: httpx.AsyncClient, max_tokens: int, content: str, finish_reason: str, completion_tokens: int
) -> None:
    sim = await serve()
    response = await client.post(
        f"{sim.base_url}/chat/completions", json=chat("one two three four", max_tokens=max_tokens)
    )
    choice = response.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == (content, finish_reason)
    assert response.json()["usage"]["completion_tokens"] == completion_tokens


async def test_models_lists_the_configured_model(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(model="sim-big")
    response = await client.get(f"{sim.base_url}/models")
    assert response.status_code == 200
    listed = {"id": "sim-big", "object": "model", "created": 0, "owned_by": "tokenflow-sim"}
    assert response.json() == {"object": "list", "data": [listed]}


async def test_embeddings_are_unit_vectors_of_their_text_in_input_order(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    sim = await serve()
    one = (await client.post(f"{sim.base_url}/embeddings", json={"model": "emb", "input": "abcde"})).json()
    assert one == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": embedding("abcde", 8)}],
        "model": "emb",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    vector = one["data"][0]["embedding"]
    assert len(vector) == 8 and abs(sum(v * v for v in vector) - 1) < 1e-5
    listed = await client.post(f"{sim.base_url}/embeddings", json={"model": "emb", "input": ["x", "abcde", "x"]})
    data = listed.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    # the same text, the same vector; another text, another one
    assert data[1]["embedding"] == vector and data[0]["embedding"] == data[2]["embedding"] != vector
    assert listed.json()["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    wide = await client.post(f"{sim.base_url}/embeddings", json={"model": "emb", "input": "a", "dimensions": 64})
    assert len(wide.json()["data"][0]["embedding"]) == 64
    assert sim.stats.outcomes == Counter({"ok": 3})


async def test_an_answer_fault_leaves_an_embedding_whole(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(fail={"length": 1.0}, json_answers=True)
    response = await client.post(f"{sim.base_url}/embeddings", json={"model": "emb", "input": "abc"})
    assert response.json()["data"][0]["embedding"] == embedding("abc", 8)
    assert sim.stats.outcomes == Counter({"ok": 1})


async def test_unknown_path_is_404_with_an_openai_error(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve()
    response = await client.post(f"{sim.base_url}/moderations", json={"model": "m"})
    assert response.status_code == 404
    assert response.json() == error(
        "Unknown request URL: POST /v1/moderations.", "invalid_request_error", "unknown_url"
    )
    assert sim.stats.outcomes == Counter({"not_found": 1})


async def test_wrong_method_is_405_naming_the_allowed_one(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve()
    response = await client.get(f"{sim.base_url}/chat/completions")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == error("/v1/chat/completions accepts POST only.", "invalid_request_error")


@pytest.mark.parametrize(
    ("path", "body", "message", "param"),
    [
        ("/chat/completions", b"{not json", "We could not parse the JSON body of your request.", None),
        ("/chat/completions", b"[1, 2]", "The request body must be a JSON object.", None),
        ("/chat/completions", b'{"messages": [{"role": "user"}]}', "you must provide a model parameter", "model"),
        ("/chat/completions", b'{"model": "m"}', "'messages' is a required property", "messages"),
        ("/chat/completions", b'{"model": "m", "messages": []}', "'messages' must be a non-empty array", "messages"),
        ("/chat/completions", b'{"model": "m", "messages": ["hi"]}', "messages[0] must be an object", "messages"),
        ("/completions", b'{"model": "m"}', "'prompt' is a required property", "prompt"),
        ("/completions", b'{"model": "m", "prompt": ["a"]}', "'prompt' must be a string", "prompt"),
        (
            "/completions",
            b'{"model": "m", "prompt": "a", "max_tokens": 0}',
            "'max_tokens' must be a positive integer",
            "max_tokens",
        ),
        ("/embeddings", b'{"model": "m"}', "'input' is a required property", "input"),
        (
            "/embeddings",
            b'{"model": "m", "input": []}',
            "'input' must be a string or a non-empty array of strings",
            "input",
        ),
        (
            "/embeddings",
            b'{"model": "m", "input": [1]}',
            "'input' must be a string or a non-empty array of strings",
            "input",
        ),
        (
            "/embeddings",
            b'{"model": "m", "input": "a", "dimensions": 0}',
            "'dimensions' must be an integer from 1 to 4096",
            "dimensions",
        ),
    ],
)
async def test_invalid_bodies_are_400_with_an_openai_error(
    serve: Serve, client: httpx.AsyncClient, path: str, body: bytes, message: str, param: str | None
) -> None:
    sim = await serve()
    response = await client.post(sim.base_url + path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == error(message, "invalid_request_error", param=param)
    assert sim.stats.outcomes == Counter({"bad_request": 1})


async def test_keep_alive_serves_many_requests_on_one_connection(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve()
    ids = [(await client.post(f"{sim.base_url}/chat/completions", json=chat(f"n{i}"))).json()["id"] for i in range(5)]
    assert ids == [f"chatcmpl-sim-{i}" for i in range(1, 6)]
    assert sim.stats.connections_opened == 1


async def test_aiohttp_client_gets_the_same_answers(serve: Serve) -> None:
    sim = await serve()
    async with aiohttp.ClientSession() as session:
        for word in ("alpha", "beta"):
            async with session.post(f"{sim.base_url}/chat/completions", json=chat(word)) as response:
                answer = await response.json()
            assert answer["choices"][0]["message"]["content"] == f"Echo: {word}"
    assert sim.stats.connections_opened == 1


async def test_pipelined_requests_are_answered_in_order(serve: Serve) -> None:
    sim = await serve(latency_ms=20)
    first = raw_post("/v1/completions", b'{"model": "m", "prompt": "first"}', headers=b"")
    second = raw_post("/v1/completions", b'{"model": "m", "prompt": "second"}')
    raw = await exchange(sim, first + second)
    assert raw.count(b"HTTP/1.1 200 OK") == 2
    assert raw.index(b"Echo: first") < raw.index(b"Echo: second")


async def test_a_garbled_request_gets_400_and_the_connection_closes(serve: Serve) -> None:
    sim = await serve()
    status, headers, body = split_response(await exchange(sim, b"HELLO\r\n\r\n"))
    assert (status, headers["connection"]) == (400, "close")
    assert orjson.loads(body) == error("the request line is not METHOD PATH HTTP/1.x", "invalid_request_error")
    assert sim.stats.outcomes == Counter({"bad_http": 1})


async def test_a_chunked_request_body_is_refused(serve: Serve) -> None:
    sim = await serve()
    raw = b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    status, _, body = split_response(await exchange(sim, raw))
    assert status == 501
    assert (
        orjson.loads(body)["error"]["message"] == "request bodies must have a Content-Length, not a Transfer-Encoding"
    )


# Streaming


def sse_payloads(text: str) -> list[str]:
    events = text.split("\n\n")
    assert events[-1] == ""
    assert all(event.startswith("data: ") for event in events[:-1])
    return [event.removeprefix("data: ") for event in events[:-1]]


async def test_chat_stream_is_sse_with_usage_and_done_via_httpx(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve()
    async with client.stream(
        "POST", f"{sim.base_url}/chat/completions", json=chat("stream me now", stream=True)
    ) as response:
        assert response.headers["content-type"] == "text/event-stream"
        text = (await response.aread()).decode()
    payloads = sse_payloads(text)
    assert payloads[-1] == "[DONE]"
    chunks = [orjson.loads(payload) for payload in payloads[:-1]]
    assert {(chunk["id"], chunk["object"], chunk["model"], chunk["created"]) for chunk in chunks} == {
        ("chatcmpl-sim-1", "chat.completion.chunk", "gpt-test", WALL)
    }
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[1:-1]]
    assert deltas == ["Echo: ", "stream ", "me ", "now", ""]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks[:-1]] == [None, None, None, None, None, "stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


async def test_completions_stream_via_aiohttp_cut_by_max_tokens(serve: Serve) -> None:
    sim = await serve()
    async with aiohttp.ClientSession() as session:
        body = {"model": "m", "prompt": "one two three", "stream": True, "max_tokens": 2}
        async with session.post(f"{sim.base_url}/completions", json=body) as response:
            payloads = sse_payloads((await response.read()).decode())
    chunks = [orjson.loads(payload) for payload in payloads[:-1]]
    assert payloads[-1] == "[DONE]"
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks[:-1]) == "Echo: one"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert {chunk["object"] for chunk in chunks} == {"text_completion"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


# Latency, seeds and the fault mix


async def test_latency_delays_the_answer(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(latency_ms=60)
    response = await client.post(f"{sim.base_url}/chat/completions", json=chat("slow"))
    assert response.status_code == 200
    assert [(reply.how, reply.delay_s) for reply in sim.replies] == [(How.SEND, 0.06)]


async def statuses(sim: Simulator, client: httpx.AsyncClient, count: int) -> list[int]:
    return [(await client.post(f"{sim.base_url}/chat/completions", json=chat("x"))).status_code for _ in range(count)]


async def test_the_same_seed_gives_the_same_faults(serve: Serve, client: httpx.AsyncClient) -> None:
    mix = {"429": 0.3, "500": 0.3}
    first = await statuses(await serve(fail=mix, seed=42), client, 30)
    again = await statuses(await serve(fail=mix, seed=42), client, 30)
    other = await statuses(await serve(fail=mix, seed=43), client, 30)
    assert first == again
    assert set(first) == {200, 429, 500}
    assert other != first


async def test_the_fault_mix_follows_the_seeded_draw(serve: Serve) -> None:
    mix = {"429": 0.2, "500": 0.1, "503": 0.1}
    sim = await serve(fail=mix, seed=5)
    draw = FaultDraw(mix, random.Random(5))
    expected = Counter(draw() or "ok" for _ in range(400))
    got: Counter[int] = Counter()
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for _ in range(50):
                async with session.post(f"{sim.base_url}/chat/completions", json=chat("x")) as response:
                    await response.read()
                    got[response.status] += 1

        await asyncio.gather(*(worker() for _ in range(8)))
    assert got == Counter({200: expected["ok"], 429: expected["429"], 500: expected["500"], 503: expected["503"]})
    assert sim.stats.outcomes == expected
    assert 60 <= expected["429"] <= 100 and 25 <= expected["500"] <= 55 and 25 <= expected["503"] <= 55


# Every fault kind, forced


@pytest.mark.parametrize(
    ("retry_after", "retry_after_ms", "expected"),
    [
        (1, None, {"retry-after": "1"}),
        (7, 250, {"retry-after": "7", "retry-after-ms": "250"}),
        ("absurd", None, {"retry-after": "999999"}),
        ("none", 1500, {"retry-after-ms": "1500"}),
        ("none", None, {}),
    ],
)
async def test_fault_429_carries_the_configured_retry_headers(
    serve: Serve,
    client: httpx.AsyncClient,
    retry_after: int | str,
    retry_after_ms: int | None,
    expected: dict[str, str],
) -> None:
    sim = await serve(fail={"429": 1.0}, retry_after=retry_after, retry_after_ms=retry_after_ms)
    response = await client.post(f"{sim.base_url}/chat/completions", json=chat("x"))
    assert response.status_code == 429
    assert {name: value for name, value in response.headers.items() if name.startswith("retry-after")} == expected
    assert response.json() == error(
        "Rate limit reached for sim-1. Please try again later.", "requests", "rate_limit_exceeded"
    )
    assert sim.stats.outcomes == Counter({"429": 1})


async def test_fault_429_date_form_is_an_http_date_ahead(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(fail={"429": 1.0}, retry_after="date")
    response = await client.post(f"{sim.base_url}/chat/completions", json=chat("x"))
    assert response.headers["retry-after"].endswith(" GMT")
    assert parsedate_to_datetime(response.headers["retry-after"]).timestamp() == WALL + 2


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("500", "The server had an error while processing your request."),
        ("503", "The server is overloaded or not ready yet."),
    ],
)
async def test_fault_5xx(serve: Serve, client: httpx.AsyncClient, kind: str, message: str) -> None:
    sim = await serve(fail={kind: 1.0})
    response = await client.post(f"{sim.base_url}/completions", json={"model": "m", "prompt": "x"})
    assert response.status_code == int(kind)
    assert response.json() == error(message, "server_error")
    assert sim.stats.outcomes == Counter({kind: 1})


async def test_fault_reset_aborts_with_an_rst(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(fail={"reset": 1.0})
    with pytest.raises(ConnectionResetError):
        await exchange(sim, raw_post("/v1/chat/completions", orjson.dumps(chat("x"))))
    with pytest.raises(httpx.ReadError):
        await client.post(f"{sim.base_url}/chat/completions", json=chat("x"))
    assert sim.stats.outcomes == Counter({"reset": 2})


async def test_fault_stall_closes_silently_after_stall_s(serve: Serve) -> None:
    sim = await serve(fail={"stall": 1.0}, stall_s=0.2)
    assert await exchange(sim, raw_post("/v1/chat/completions", orjson.dumps(chat("x")))) == b""
    assert [reply.how for reply in sim.replies] == [How.STALL] and sim.stall_s == 0.2
    assert sim.stats.outcomes == Counter({"stall": 1})


async def test_a_stalled_connection_ends_when_the_client_goes(serve: Serve) -> None:
    sim = await serve(fail={"stall": 1.0})
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(raw_post("/v1/chat/completions", orjson.dumps(chat("x"))))
    await sim.received.wait()
    writer.close()
    await sim.gone.wait()
    assert sim.stats.connections_open == 0


async def test_fault_malformed_is_200_json_that_does_not_parse(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(fail={"malformed": 1.0})
    response = await client.post(f"{sim.base_url}/chat/completions", json=chat("x"))
    assert (response.status_code, response.headers["content-type"]) == (200, "application/json")
    assert response.content == MALFORMED_BODY
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


async def test_fault_truncated_promises_more_than_it_sends(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(fail={"truncated": 1.0})
    status, headers, body = split_response(
        await exchange(sim, raw_post("/v1/chat/completions", orjson.dumps(chat("x")), b""))
    )
    assert status == 200
    assert len(body) == int(headers["content-length"]) // 2
    assert body.startswith(b'{"id":"chatcmpl-sim-1","object":"chat.completion"')
    with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message body"):
        await client.post(f"{sim.base_url}/chat/completions", json=chat("x"))


async def test_fault_truncated_stream_ends_before_the_last_chunk(serve: Serve) -> None:
    sim = await serve(fail={"truncated": 1.0})
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sim.base_url}/chat/completions", json=chat("x", stream=True)) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()


async def test_fault_drip_sends_a_valid_body_slowly(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(fail={"drip": 1.0}, drip_interval_ms=2)
    response = await client.post(f"{sim.base_url}/chat/completions", json=chat("drip"))
    assert response.json()["choices"][0]["message"]["content"] == "Echo: drip"
    # the body goes DRIP_BYTES at a time, one piece every drip_s
    assert [reply.how for reply in sim.replies] == [How.DRIP] and sim.drip_s == 0.002
    assert len(response.content) > 2 * DRIP_BYTES  # so it took several pieces
    assert sim.stats.outcomes == Counter({"drip": 1})


async def test_fault_huge_streams_a_body_of_huge_bytes(serve: Serve) -> None:
    size = 3_000_001
    sim = await serve(fail={"huge": 1.0}, huge_bytes=size)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sim.base_url}/chat/completions", json=chat("x")) as response:
            assert (response.status, response.headers["content-length"]) == (200, str(size))
            body = await response.read()
    assert len(body) == size
    padding = orjson.loads(body)["padding"]
    assert padding == "x" * len(padding)


async def test_fault_ctype_is_200_html(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(fail={"ctype": 1.0})
    response = await client.post(f"{sim.base_url}/chat/completions", json=chat("x"))
    assert (response.status_code, response.headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert response.content == HTML_BODY


# The hidden rate limit and the key


async def test_rpm_limit_is_a_sliding_minute_on_the_injected_clock(serve: Serve, client: httpx.AsyncClient) -> None:
    clock = ManualClock()
    sim = await serve(clock=clock, rpm_limit=3)
    url = f"{sim.base_url}/chat/completions"

    async def post() -> httpx.Response:
        return await client.post(url, json=chat("x"))

    assert [(await post()).status_code for _ in range(3)] == [200, 200, 200]
    refused = await post()
    assert refused.status_code == 429
    assert (refused.headers["retry-after"], refused.headers["retry-after-ms"]) == ("60", "60000")
    assert refused.json() == error(
        "Rate limit reached for sim-1: 3 requests per minute.", "requests", "rate_limit_exceeded"
    )
    clock.advance(30.5)
    refused = await post()
    assert (refused.status_code, refused.headers["retry-after"], refused.headers["retry-after-ms"]) == (
        429,
        "30",
        "29500",
    )
    clock.advance(29.5)
    assert [(await post()).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert sim.stats.outcomes == Counter({"ok": 6, "rate_limited": 3})


async def test_require_key_refuses_a_missing_or_wrong_key(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(require_key="sk-sim-secret")
    url = f"{sim.base_url}/chat/completions"
    refusal = error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "sk-sim-secret"}):
        response = await client.post(url, json=chat("x"), headers=headers)
        assert (response.status_code, response.json()) == (401, refusal)
    assert (await client.get(f"{sim.base_url}/models")).status_code == 401
    response = await client.post(url, json=chat("x"), headers={"Authorization": "Bearer sk-sim-secret"})
    assert response.json()["choices"][0]["message"]["content"] == "Echo: x"
    assert sim.stats.outcomes == Counter({"unauthorized": 4, "ok": 1})
    assert "sk-sim-secret" not in repr(sim.config)


# Closing


async def test_close_drops_a_stalled_connection_and_leaves_no_task(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve(fail={"stall": 1.0})
    request = asyncio.create_task(client.post(f"{sim.base_url}/chat/completions", json=chat("x")))
    await sim.received.wait()
    await asyncio.wait_for(sim.close(), 2)
    with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected"):
        await request
    assert sim.stats.connections_open == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_close_drops_a_huge_body_the_client_does_not_read(serve: Serve) -> None:
    sim = await serve(fail={"huge": 1.0})
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(raw_post("/v1/chat/completions", orjson.dumps(chat("x"))))
    await reader.readuntil(b'"padding": "')
    await asyncio.wait_for(sim.close(), 2)
    assert sim.stats.connections_open == 0
    writer.close()


async def test_base_url_and_port_name_the_listening_socket(serve: Serve, client: httpx.AsyncClient) -> None:
    sim = await serve()
    assert sim.base_url == f"http://127.0.0.1:{sim.port}/v1"
    assert sim.port > 0
    assert (await client.get(f"http://127.0.0.1:{sim.port}/v1/models")).status_code == 200


# Answers that fail a job's checks (issue 14)


async def answers_of(sim: Simulator, client: httpx.AsyncClient, n: int, **extra: Any) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        response = await client.post(f"{sim.base_url}/chat/completions", json=chat("one two", **extra))
        choice = response.json()["choices"][0]
        out.append((choice["message"]["content"], choice["finish_reason"]))
    return out


async def test_json_answers_wrap_the_echo_and_the_answer_faults_break_some(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    plain = await serve(json_answers=True)
    assert await answers_of(plain, client, 1) == [('{"answer":"Echo: one two"}', "stop")]
    cut = await serve(json_answers=True, fail={"length": 1.0})
    assert await answers_of(cut, client, 1) == [('{"answer":"Ec', "length")]
    chatty = await serve(json_answers=True, fail={"non_json": 1.0})
    assert await answers_of(chatty, client, 1) == [("Sure! Here is my answer: Echo: one two", "stop")]
    streamed = await serve(json_answers=True, fail={"length": 1.0})
    response = await client.post(f"{streamed.base_url}/chat/completions", json=chat("one two", stream=True))
    assert '"finish_reason":"length"' in response.text
    assert cut.stats.outcomes == {"length": 1}


async def test_the_answer_faults_are_drawn_with_the_seed(serve: Serve, client: httpx.AsyncClient) -> None:
    knobs = {"json_answers": True, "fail": {"length": 0.3, "non_json": 0.3}, "seed": 5}
    first = await answers_of(await serve(**knobs), client, 12)
    second = await answers_of(await serve(**knobs), client, 12)
    assert first == second
    assert {reason for _, reason in first} == {"stop", "length"}
    assert any(text.startswith("Sure!") for text, _ in first)

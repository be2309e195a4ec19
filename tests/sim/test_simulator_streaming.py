"""The simulator's streamed answers over raw loopback sockets: pacing, and the faults that strike mid-stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from tokenflow_tui.engine.clock import ManualClock
from tokenflow_tui.sim import Simulator, SimulatorConfig
from tokenflow_tui.sim.connection import How
from tokenflow_tui.sim.faults import MALFORMED_EVENT, stream_reply
from tokenflow_tui.sim.http import LAST_CHUNK, chunk

pytestmark = pytest.mark.timeout(20)

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "one two three"}], "stream": True})
REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
WORDS = ["Echo: ", "one ", "two ", "three"]  # the answer's content events, after the role event

Serve = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    started: list[Simulator] = []

    async def start(**knobs: Any) -> Simulator:
        sim = Simulator(SimulatorConfig(latency_ms=0, **knobs), clock=ManualClock())
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.close()


async def exchange(sim: Simulator) -> tuple[bytes, bytes, str]:
    """The head and the raw body of one streamed answer, and how the connection ended ("closed" or "reset")."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    received = b""
    ending = "closed"
    try:
        writer.write(REQUEST)
        for _ in range(1000):
            try:
                data = await reader.read(65536)
            except ConnectionResetError:
                ending = "reset"
                break
            if not data:
                break
            received += data
            if received.endswith(LAST_CHUNK):
                break  # the whole answer: the connection stays open for the next request
    finally:
        writer.close()
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body, ending


def dechunk(body: bytes) -> tuple[list[bytes], bool]:
    """The chunks of a chunked body, and whether its last, empty chunk came."""
    pieces = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return pieces, True
        pieces.append(rest[:size])
        body = rest[size + 2 :]
    return pieces, False


def contents(pieces: list[bytes]) -> list[Any]:
    """Each event's content delta, "usage" for the usage event, "[DONE]", or the raw bytes of one that is not JSON."""
    out: list[Any] = []
    for piece in pieces:
        data = piece.removeprefix(b"data: ").removesuffix(b"\n\n")
        if data == b"[DONE]":
            out.append("[DONE]")
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            out.append(piece)
            continue
        out.append("usage" if not event["choices"] else event["choices"][0]["delta"].get("content"))
    return out


WHOLE = ["", *WORDS, None, "usage", "[DONE]"]  # role, words, finish, usage, done


async def test_a_paced_stream_arrives_whole(serve: Serve) -> None:
    sim = await serve(token_interval_ms=1)
    head, body, ending = await exchange(sim)
    assert b"Content-Type: text/event-stream" in head and b"Transfer-Encoding: chunked" in head
    pieces, last = dechunk(body)
    assert (contents(pieces), last, ending) == (WHOLE, True, "closed")


async def test_no_done_ends_the_stream_properly_without_its_done_event(serve: Serve) -> None:
    sim = await serve(fail={"no_done": 1.0})
    _, body, _ = await exchange(sim)
    pieces, last = dechunk(body)
    assert (contents(pieces), last) == (WHOLE[:-1], True)


async def test_reset_mid_stream_sends_half_the_events_then_an_rst(serve: Serve) -> None:
    sim = await serve(fail={"reset": 1.0})
    _, body, ending = await exchange(sim)
    pieces, last = dechunk(body)
    assert (contents(pieces), last, ending) == (WHOLE[:4], False, "reset")


async def test_truncated_mid_stream_sends_half_the_events_then_closes(serve: Serve) -> None:
    sim = await serve(fail={"truncated": 1.0})
    _, body, ending = await exchange(sim)
    pieces, last = dechunk(body)
    assert (contents(pieces), last, ending) == (WHOLE[:4], False, "closed")


async def test_stall_mid_stream_sends_half_the_events_then_silence_until_stall_s(serve: Serve) -> None:
    sim = await serve(fail={"stall": 1.0}, stall_s=0.05)
    _, body, ending = await exchange(sim)
    pieces, last = dechunk(body)
    assert (contents(pieces), last, ending) == (WHOLE[:4], False, "closed")


async def test_malformed_mid_stream_sends_a_chunk_that_does_not_parse(serve: Serve) -> None:
    sim = await serve(fail={"malformed": 1.0})
    _, body, _ = await exchange(sim)
    pieces, last = dechunk(body)
    assert (contents(pieces), last) == ([*WHOLE[:4], MALFORMED_EVENT], True)


def test_stream_replies_carry_their_pace_and_how_they_end() -> None:
    pieces = [chunk(b"data: %d\n\n" % i) for i in range(6)]
    whole = stream_reply(None, b"HEAD", pieces, 0.02, 0.5)
    assert (whole.how, whole.events, whole.pace_s, whole.delay_s, whole.then) == (
        How.PACED,
        [*pieces, LAST_CHUNK],
        0.02,
        0.5,
        How.SEND,
    )
    assert (
        stream_reply("reset", b"HEAD", pieces, 0.02, 0.5).events,
        stream_reply("reset", b"", pieces, 0, 0).then,
    ) == (
        pieces[:3],
        How.RESET,
    )
    assert stream_reply("stall", b"", pieces, 0, 0).then is How.STALL
    truncated = stream_reply("truncated", b"", pieces, 0, 0)
    assert (truncated.events, truncated.close) == (pieces[:3], True)
    with pytest.raises(ValueError, match="'429' is not a mid-stream fault"):
        stream_reply("429", b"", pieces, 0, 0)

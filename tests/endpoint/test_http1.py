"""The asyncio transport (endpoint/http1*.py) against scripted raw servers on 127.0.0.1: keep-alive and its
limits, every body framing, compression, failures at each step, cancellation, TLS, idle expiry."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
import subprocess
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tokenflow_tui.endpoint.http1 import BodyCut, Http1Connection, MalformedResponse
from tokenflow_tui.endpoint.http1_pool import USER_AGENT, Http1Client
from tokenflow_tui.endpoint.transport import (
    TRANSPORT_ERRORS,
    BodyCutShort,
    chunk_reader,
    error_kind,
    failed_to_connect,
    make_client,
    read_body,
    response_headers,
)

ANSWER = b'{"ok":true}'
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-test"}
LIMIT = 1 << 20

# what the server does for the request of this index on its connection: True keeps the connection open
Script = Callable[[int, asyncio.StreamWriter], Awaitable[bool]]


def reply(body: bytes = ANSWER, *headers: str) -> bytes:
    head = "".join(f"{header}\r\n" for header in ("Content-Type: application/json", *headers))
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (head.encode(), len(body), body)


def always(data: bytes, keep: bool = True) -> Script:
    async def script(index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        return keep

    return script


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN."""
    writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class RawServer:
    """An asyncio server on 127.0.0.1 that answers each request with `script`, counting its connections."""

    def __init__(self, script: Script | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.script = script or always(reply())
        self.tls = tls
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0  # accepted so far
        self.open = 0
        self.peak_open = 0
        self.closed = asyncio.Event()  # set whenever a connection ends
        self.release = asyncio.Event()  # set at the end: ends stalled answers
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> httpx.URL:
        scheme = "https" if self.tls else "http"
        return httpx.URL(f"{scheme}://127.0.0.1:{self.port}/v1/chat/completions")

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self.release.set()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        try:
            for index in range(10_000):
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")[:-2]
                headers = {name.lower(): value for name, _, value in (f.partition(": ") for f in fields)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((line, headers, body))
                if not await self.script(index, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self.open -= 1
            writer.close()
            self.closed.set()


def http1_client(max_connections: int = 4, *, tls: ssl.SSLContext | None = None, **options: Any) -> Http1Client:
    settings = {"connect_timeout_s": 5.0, "keepalive_s": 4.0} | options
    return Http1Client(
        max_connections,
        ssl_context=tls or ssl.create_default_context(),
        behind_proxy=lambda url: False,
        fallback=lambda: None,
        **settings,
    )


async def post(client: Any, url: httpx.URL) -> tuple[int, bytes]:
    async with client.stream("POST", url, content=BODY, headers=HEADERS) as response:
        body, complete = await read_body(response, LIMIT)
        assert complete
        return response.status_code, body


@pytest.fixture
async def client():
    made = make_client("asyncio", 4, 5.0)
    yield made
    await made.aclose()


# ----- the wire and keep-alive ------------------------------------------------------------------


async def test_a_request_sends_its_headers_and_body_and_the_connection_is_reused(client):
    async with RawServer() as server:
        outcomes = [await post(client, server.url) for _ in range(20)]
    assert outcomes == [(200, ANSWER)] * 20
    assert server.connections == 1
    line, headers, body = server.requests[0]
    assert line == "POST /v1/chat/completions HTTP/1.1"
    assert headers == {
        "host": f"127.0.0.1:{server.port}",
        "user-agent": USER_AGENT,
        "accept-encoding": "gzip, deflate",
        **HEADERS,
        "content-length": str(len(BODY)),
    }
    assert body == BODY


async def test_connection_close_is_honoured_even_when_the_server_keeps_the_socket_open(client):
    async with RawServer(always(reply(ANSWER, "Connection: close"))) as server:
        outcomes = [await post(client, server.url) for _ in range(3)]
    assert outcomes == [(200, ANSWER)] * 3
    assert server.connections == 3


async def test_an_http_1_0_answer_without_keep_alive_is_not_reused(client):
    async with RawServer(always(reply().replace(b"HTTP/1.1", b"HTTP/1.0", 1))) as server:
        outcomes = [await post(client, server.url) for _ in range(2)]
    assert outcomes == [(200, ANSWER)] * 2
    assert server.connections == 2


async def test_bytes_after_the_answer_make_the_connection_unfit_for_another(client):
    # a 408 a server sends on an idle connection before closing it is not the next request's answer
    extra = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    async with RawServer(always(reply() + extra)) as server:
        outcomes = [await post(client, server.url) for _ in range(2)]
    assert outcomes == [(200, ANSWER)] * 2
    assert server.connections == 2


async def test_an_interim_100_continue_is_skipped(client):
    async with RawServer(always(b"HTTP/1.1 100 Continue\r\n\r\n" + reply())) as server:
        assert await post(client, server.url) == (200, ANSWER)
        assert await post(client, server.url) == (200, ANSWER)
    assert server.connections == 1


async def test_the_pool_never_opens_more_than_max_connections(client):
    gate = asyncio.Event()
    arrived = 0
    everyone_in = asyncio.Event()

    async def gated(index: int, writer: asyncio.StreamWriter) -> bool:
        nonlocal arrived
        arrived += 1
        if arrived == 4:
            everyone_in.set()
        await gate.wait()
        writer.write(reply())
        return True

    async with RawServer(gated) as server:
        calls = [asyncio.ensure_future(post(client, server.url)) for _ in range(30)]
        await asyncio.wait_for(everyone_in.wait(), 10)
        gate.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*calls), 10)
    assert outcomes == [(200, ANSWER)] * 30
    assert (server.peak_open, server.connections) == (4, 4)


# ----- bodies -----------------------------------------------------------------------------------


def chunked(*pieces: bytes) -> bytes:
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-Trailer: t\r\n\r\n"


async def test_a_chunked_body_is_read_whole_and_the_connection_kept(client):
    pieces = [b"a" * 10, b"b" * 70_000, b"c"]
    async with RawServer(always(chunked(*pieces))) as server:
        assert await post(client, server.url) == (200, b"".join(pieces))
        assert await post(client, server.url) == (200, b"".join(pieces))
    assert server.connections == 1


class FakeTransport:
    """Where a connection under test writes: nowhere."""

    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


async def waiting_connection() -> tuple[Http1Connection, asyncio.Future[Any]]:
    """A connection that has sent a request and waits for its head, fed by hand."""
    connection = Http1Connection(("http", "h", 80), lambda _: None, asyncio.get_running_loop())
    connection.connection_made(FakeTransport())  # type: ignore[arg-type]
    head = asyncio.ensure_future(connection.request(b"GET / HTTP/1.1\r\n\r\n", False))
    await asyncio.sleep(0)
    return connection, head


async def test_the_parser_takes_a_chunked_answer_one_byte_at_a_time():
    answer = chunked(b"hello ", b"world")
    connection, head = await waiting_connection()
    for index in range(len(answer)):
        connection.data_received(answer[index : index + 1])
    assert (await head).status_code == 200
    assert await connection.read(LIMIT) == ([bytes([byte]) for byte in b"hello world"], True)
    assert connection.reusable


async def test_a_bad_chunk_size_is_a_malformed_response_that_keeps_what_came():
    connection, head = await waiting_connection()
    connection.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
    assert (await head).status_code == 200
    with pytest.raises(BodyCut) as caught:  # a malformed body is one cut short
        await connection.read(LIMIT)
    assert str(caught.value) == "a bad chunk size b'zz'"
    assert caught.value.partial == b"abc"
    assert not connection.reusable


async def test_a_body_without_length_is_read_to_the_close(client):
    async with RawServer(
        always(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 50_000, False)
    ) as server:
        assert await post(client, server.url) == (200, b"x" * 50_000)
        assert await post(client, server.url) == (200, b"x" * 50_000)
    assert server.connections == 2


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),  # raw, as some servers send it
    ],
)
async def test_a_compressed_body_is_decoded(client, encoding, compress):
    async with RawServer(always(reply(compress(ANSWER * 100), f"Content-Encoding: {encoding}"))) as server:
        assert await post(client, server.url) == (200, ANSWER * 100)


async def test_a_compressed_stream_is_decoded_as_it_arrives(client):
    events = b"".join(b'data: {"n": %d}\n\n' % n for n in range(50))
    compressed = gzip.compress(events)
    answer = chunked(compressed[:20], compressed[20:]).replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n", 1)
    async with RawServer(always(answer)) as server:
        async with client.stream("POST", server.url, content=BODY, headers=HEADERS) as response:
            read = chunk_reader(response)
            parts = [await read()]
            while parts[-1] and len(parts) < 100:
                parts.append(await read())
            assert await read() == b""  # and after the end, still the end
    assert b"".join(parts) == events and parts[-1] == b"" and all(parts[:-1])


async def test_headers_are_looked_up_in_any_case_and_the_first_of_a_repeat_wins(client):
    answer = reply(ANSWER, "X-RateLimit-Remaining-Requests: 7", "x-ratelimit-remaining-requests: 8")
    async with RawServer(always(answer)) as server:
        async with client.stream("POST", server.url, content=BODY, headers=HEADERS) as response:
            headers = response_headers(response)
            seen = [headers.get(n) for n in ("x-ratelimit-remaining-requests", "X-RATELIMIT-REMAINING-REQUESTS", "no")]
            await read_body(response, LIMIT)
    assert seen == ["7", "7", None]
    assert (response.status_code, response.reason_phrase) == (200, "OK")


async def test_a_body_larger_than_the_limit_is_cut_at_it_and_the_connection_dropped(client):
    body = b"x" * 300_000
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body
    async with RawServer(always(answer, False)) as server:
        async with client.stream("POST", server.url, content=BODY, headers=HEADERS) as response:
            read, complete = await read_body(response, 1000)
        assert await post(client, server.url) == (200, body)
    assert not complete and read.startswith(b"x" * 1000)
    assert server.connections == 2


# ----- failures ---------------------------------------------------------------------------------


async def test_a_reset_mid_body_keeps_what_arrived_and_the_next_request_gets_a_new_connection(client):
    async def cut(index: int, writer: asyncio.StreamWriter) -> bool:
        if index == 0 and len(server.requests) == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b'{"choices": ')
            await writer.drain()
            await asyncio.sleep(0)  # the head and partial body go out before the reset
            reset(writer)
            return False
        writer.write(reply())
        return True

    async with RawServer(cut) as server:
        async with client.stream("POST", server.url, content=BODY, headers=HEADERS) as response:
            with pytest.raises(BodyCutShort) as caught:
                await read_body(response, LIMIT)
        assert await post(client, server.url) == (200, ANSWER)
    assert caught.value.partial == b'{"choices": '
    assert server.connections == 2
    assert not failed_to_connect(caught.value.error) and error_kind(caught.value.error) == "connection"


@pytest.mark.parametrize(
    "answer",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"SMTP ready\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"],
)
async def test_a_close_before_the_head_or_a_malformed_head_is_a_connection_error(client, answer):
    async with RawServer(always(answer, False)) as server:
        with pytest.raises(TRANSPORT_ERRORS) as caught:
            await post(client, server.url)
    assert not failed_to_connect(caught.value) and error_kind(caught.value) == "connection"
    assert isinstance(caught.value, MalformedResponse) == (answer.startswith(b"SMTP") or answer.endswith(b"\r\n\r\n"))


async def test_a_refused_connection_failed_to_connect(client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TRANSPORT_ERRORS) as caught:
        await post(client, httpx.URL(f"http://127.0.0.1:{port}/v1/chat/completions"))
    assert failed_to_connect(caught.value) and error_kind(caught.value) == "connection"
    assert str(caught.value).startswith(f"cannot connect to 127.0.0.1:{port}: ")


async def test_a_connect_timeout_failed_to_connect_and_is_a_timeout():
    # a listener that never accepts, its queue full: the kernel drops further SYNs
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        client = http1_client(connect_timeout_s=0.2)
        try:
            with pytest.raises(TRANSPORT_ERRORS) as caught:
                await post(client, httpx.URL(f"http://127.0.0.1:{port}/v1"))
        finally:
            await client.aclose()
            for filler in fillers:
                filler.close()
    assert str(caught.value) == f"no connection to 127.0.0.1:{port} within 0.2 s"
    assert failed_to_connect(caught.value) and error_kind(caught.value) == "timeout"
    assert client._free == 4  # the attempt's slot is back


# ----- cancellation -----------------------------------------------------------------------------


async def test_cancelled_exchanges_free_their_slots_at_every_step():
    """Cancelled while waiting for the head, mid-body and waiting for a slot: the pool still serves."""
    stalled = asyncio.Event()

    async def script(index: int, writer: asyncio.StreamWriter) -> bool:
        count = len(server.requests)
        if count == 1:  # the head never comes
            stalled.set()
            await server.release.wait()
            return False
        if count == 2:  # half the body, then nothing
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
            await server.release.wait()
            return False
        writer.write(reply())
        return True

    client = http1_client(2)
    async with RawServer(script) as server:
        try:
            heads = asyncio.ensure_future(post(client, server.url))
            await asyncio.wait_for(stalled.wait(), 10)
            async with client.stream("POST", server.url, content=BODY, headers=HEADERS) as response:
                body = asyncio.ensure_future(read_body(response, LIMIT))
                waiting = asyncio.ensure_future(post(client, server.url))  # no slot left: it waits
                await asyncio.sleep(0)
                assert not body.done() and not waiting.done()
                for task in (heads, body, waiting):
                    task.cancel()
                await asyncio.gather(heads, body, waiting, return_exceptions=True)
            assert (heads.cancelled(), body.cancelled(), waiting.cancelled()) == (True, True, True)
            outcomes = await asyncio.wait_for(asyncio.gather(*(post(client, server.url) for _ in range(6))), 10)
        finally:
            await client.aclose()
    assert outcomes == [(200, ANSWER)] * 6
    assert client._free == 2 and not client._waiters


async def test_a_deadline_that_cancels_at_any_point_never_leaks_a_slot():
    """Deadlines of every length against a slow answer: after them all, the pool is whole."""

    async def slow(index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await writer.drain()
        await asyncio.sleep(0.001)
        writer.write(b"cd")
        return True

    client = http1_client(3)
    async with RawServer(slow) as server:
        try:
            for step in range(40):
                calls = [asyncio.ensure_future(post(client, server.url)) for _ in range(5)]
                for _ in range(step % 7):
                    await asyncio.sleep(0)
                for call in calls[: step % 5]:
                    call.cancel()
                await asyncio.gather(*calls, return_exceptions=True)
            # every slot is free or an idle connection's (the server may see a cut connection close a
            # loop turn after its slot is reused, so its own count is not the measure here)
            assert client._free + sum(len(idle) for idle in client._idle.values()) == 3
            assert not client._waiters
            outcomes = await asyncio.wait_for(asyncio.gather(*(post(client, server.url) for _ in range(9))), 10)
        finally:
            await client.aclose()
    assert outcomes == [(200, b"abcd")] * 9


# ----- TLS and idle expiry ----------------------------------------------------------------------


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for the name localhost (not for the address 127.0.0.1), and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


async def test_tls_is_spoken_and_verified(tmp_path):
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_tls.sni_callback = lambda ssl_object, name, context: names.append(name)
    trusting = http1_client(tls=ssl.create_default_context(cafile=str(cert)))
    untrusting = http1_client()
    try:
        async with RawServer(tls=server_tls) as server:
            url = httpx.URL(f"https://localhost:{server.port}/v1/chat/completions")
            outcomes = [await post(trusting, url) for _ in range(3)]
            with pytest.raises(TRANSPORT_ERRORS) as caught:
                await post(untrusting, url)
            # the name checked is the URL's: the certificate is for localhost, not for 127.0.0.1
            with pytest.raises(TRANSPORT_ERRORS) as wrong_name:
                await post(trusting, server.url)
    finally:
        await trusting.aclose()
        await untrusting.aclose()
    assert outcomes == [(200, ANSWER)] * 3
    assert server.connections == 1  # the server counts only connections past the handshake
    assert names[0] == "localhost"  # SNI
    assert failed_to_connect(caught.value) and "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert failed_to_connect(wrong_name.value) and "IP address mismatch" in str(wrong_name.value)


async def test_an_idle_connection_is_dropped_after_the_keepalive():
    client = http1_client(keepalive_s=0.05)
    try:
        async with RawServer() as server:
            assert await post(client, server.url) == (200, ANSWER)
            await asyncio.wait_for(server.closed.wait(), 10)  # the pool's timer closed it
            assert (server.open, client._idle[next(iter(client._idle))]) == (0, [])
            assert await post(client, server.url) == (200, ANSWER)
    finally:
        await client.aclose()
    assert server.connections == 2


async def test_an_expired_idle_connection_is_not_used():
    client = http1_client(keepalive_s=0.0)  # expired the moment it is idle
    try:
        async with RawServer() as server:
            outcomes = [await post(client, server.url) for _ in range(3)]
    finally:
        await client.aclose()
    assert outcomes == [(200, ANSWER)] * 3
    assert server.connections == 3


async def test_a_connection_the_server_closed_while_idle_is_not_used(client):
    async with RawServer(always(reply(), False)) as server:
        assert await post(client, server.url) == (200, ANSWER)
        await asyncio.wait_for(server.closed.wait(), 10)
        for _ in range(100):  # bounded: the client hears of the close within a few loop turns
            if not any(client._idle.values()):
                break
            await asyncio.sleep(0)
        assert await post(client, server.url) == (200, ANSWER)
    assert server.connections == 2


async def test_a_new_url_object_per_request_does_not_grow_the_routes(client):
    async with RawServer() as server:
        outcomes = [await post(client, httpx.URL(str(server.url))) for _ in range(200)]
    assert outcomes == [(200, ANSWER)] * 200
    assert server.connections == 1
    assert len(client._routes) <= 64

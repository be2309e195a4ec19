"""The direct client under the built-in handler (jobs/transport.py): httpx's Request and Response straight
over the transports, without httpx.AsyncClient.send. What reaches the wire, proxies from the
environment, and the least-busy bookkeeping of split pools. Servers on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import gzip
import socket

import httpx
import pytest

from tokenflow_tui.endpoint.transport import TRANSPORT_ERRORS, TRANSPORTS, make_client, read_body, response_headers

ANSWER = b'{"ok":true}'
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-test"}


def reply(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{header}\r\n" for header in ("Content-Type: application/json", *headers))
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (head.encode(), len(body), body)


class RawServer:
    """Records each request's head and body as they came over the socket, and answers each with `answer`."""

    def __init__(self, answer: bytes = reply(ANSWER)) -> None:
        self.answer = answer
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")[:-2]
                headers = {name.lower(): value for name, _, value in (f.partition(": ") for f in fields)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((line, headers, body))
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def post(client, url: str) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    async with client.stream("POST", httpx.URL(url), content=BODY, headers=HEADERS) as response:
        return response.status_code, await response.aread()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_request_on_the_wire(transport):
    async with RawServer() as server:
        client = make_client(transport, 4, 5.0)
        try:
            for _ in range(2):
                assert await post(client, f"http://127.0.0.1:{server.port}/v1/chat/completions") == (200, ANSWER)
        finally:
            await client.aclose()
    assert len(server.requests) == 2
    for line, headers, body in server.requests:
        assert line == "POST /v1/chat/completions HTTP/1.1"
        assert {name: headers[name] for name in ("host", "content-type", "authorization", "content-length")} == {
            "host": f"127.0.0.1:{server.port}",
            "content-type": "application/json",
            "authorization": "Bearer sk-test",
            "content-length": str(len(BODY)),
        }
        assert "transfer-encoding" not in headers
        assert body == BODY


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_proxy_from_the_environment_is_used(transport, monkeypatch):
    async with RawServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = make_client(transport, 4, 5.0)
        try:
            # the host does not exist: only the proxy can answer
            assert await post(client, "http://api.example.invalid/v1/chat/completions") == (200, ANSWER)
        finally:
            await client.aclose()
    [(line, headers, body)] = proxy.requests
    assert line == "POST http://api.example.invalid/v1/chat/completions HTTP/1.1"
    assert headers["host"] == "api.example.invalid"
    assert body == BODY


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_failed_and_finished_requests_leave_no_pool_busy(transport):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    # split httpx: three pools; aiohttp and asyncio: one of 4 connections, fewer than the failures, so
    # that a connection the failures kept would hold the later requests back
    limit = 40 if transport == "httpx" else 4
    client = make_client(transport, limit, 5.0)
    try:
        for _ in range(5):
            with pytest.raises(TRANSPORT_ERRORS):
                await post(client, f"http://127.0.0.1:{closed}/v1/chat/completions")
        async with RawServer() as server:
            url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
            outcomes = await asyncio.wait_for(asyncio.gather(*(post(client, url) for _ in range(30))), 20)
        assert outcomes == [(200, ANSWER)] * 30
        if transport == "httpx":
            # a count left behind would steer every later request away from its pool
            assert client._busy == [0] * 3
    finally:
        await client.aclose()


async def read_with(transport: str, answer: bytes, limit: int) -> tuple[dict[str, str | None], bytes, bool]:
    """The headers asked for by read_body's callers, and what read_body makes of `answer`."""
    async with RawServer(answer) as server:
        client = make_client(transport, 4, 5.0)
        try:
            url = httpx.URL(f"http://127.0.0.1:{server.port}/v1/chat/completions")
            async with client.stream("POST", url, content=BODY, headers=HEADERS) as response:
                headers = response_headers(response)
                names = ("content-type", "X-RateLimit-Remaining-Requests", "retry-after")
                seen = {name: headers.get(name) for name in names}
                return seen, *await read_body(response, limit)
        finally:
            await client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_body_of_many_chunks_is_read_whole_with_its_headers(transport):
    body = bytes(range(256)) * 1000  # 256 kB: many reads
    answer = reply(body, "x-ratelimit-remaining-requests: 7", "X-RateLimit-Remaining-Requests: 8")
    headers, read, complete = await read_with(transport, answer, len(body))
    assert (read, complete) == (body, True)
    # names in any case; of a repeated header, the first (httpx would join both)
    expected_remaining = "7, 8" if transport == "httpx" else "7"
    assert headers == {
        "content-type": "application/json",
        "X-RateLimit-Remaining-Requests": expected_remaining,
        "retry-after": None,
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_body_declared_one_byte_over_the_limit_is_not_read(transport):
    body = b"x" * 40_000
    _, read, complete = await read_with(transport, reply(body), len(body) - 1)
    assert (read, complete) == (b"", False)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_compressed_body_is_decoded(transport):
    _, read, complete = await read_with(transport, reply(gzip.compress(ANSWER * 50), "Content-Encoding: gzip"), 10_000)
    assert (read, complete) == (ANSWER * 50, True)

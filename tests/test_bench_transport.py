"""The direct client under the built-in handler (jobs/transport.py): httpx's Request and Response straight
over the transports, without httpx.AsyncClient.send. What reaches the wire, proxies from the
environment, and the least-busy bookkeeping of split pools. Servers on 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from tokenflow_tui.jobs.transport import TRANSPORTS, make_client

ANSWER = b'{"ok":true}'
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-test"}


class RawServer:
    """Records each request's head and body as they came over the socket, and answers 200 with ANSWER."""

    def __init__(self) -> None:
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
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
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
    client = make_client(transport, 40, 5.0)  # split httpx: three pools
    try:
        for _ in range(5):
            with pytest.raises((httpx.TransportError, OSError)):
                await post(client, f"http://127.0.0.1:{closed}/v1/chat/completions")
        async with RawServer() as server:
            url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
            outcomes = await asyncio.gather(*(post(client, url) for _ in range(30)))
        assert outcomes == [(200, ANSWER)] * 30
        # a count left behind would steer every later request away from its pool
        assert client._busy == [0] * (1 if transport == "aiohttp" else 3)
    finally:
        await client.aclose()

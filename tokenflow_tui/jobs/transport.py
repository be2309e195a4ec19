"""The HTTP client of a run: httpx's API over aiohttp (default) or over split plain-httpx pools (DESIGN §4).

One client serves the whole run; the caller closes it with `aclose()`.
"""
from __future__ import annotations

import asyncio
import math
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, AsyncIterator, Literal, Protocol

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient

TransportName = Literal["aiohttp", "httpx"]
TRANSPORTS: tuple[TransportName, ...] = ("aiohttp", "httpx")

# one plain httpx pool rescans all its connections per request, so its cost grows with its size
REQUESTS_PER_HTTPX_POOL = 16
# a little under the 5 s idle timeout of common servers (uvicorn, so vLLM and SGLang), so the client
# drops an idle connection before the server does and a POST never lands on a closing socket
KEEPALIVE_EXPIRY_S = 4.0

# what a failing request can raise: httpx's errors, and the aiohttp ones httpx-aiohttp lets through
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError, aiohttp.ClientError)


class ClientLike(Protocol):
    """The part of httpx.AsyncClient a run uses."""

    def stream(
        self, method: str, url: httpx.URL | str, *, content: bytes, headers: dict[str, str]
    ) -> AbstractAsyncContextManager[httpx.Response]: ...

    async def aclose(self) -> None: ...


def make_client(transport: TransportName, max_connections: int, timeout_s: float) -> ClientLike:
    """A keep-alive client for up to `max_connections` requests in flight (size it to the worker count)."""
    if max_connections < 1:
        raise ValueError(f"make_client: max_connections must be ≥ 1, got {max_connections}")
    if transport == "aiohttp":
        return HttpxAiohttpClient(limits=_limits(max_connections), timeout=timeout_s)
    if transport == "httpx":
        return SplitPoolClient(max_connections, timeout_s)
    raise ValueError(f"make_client: transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")


class SplitPoolClient:
    """Plain httpx split into one AsyncClient per 16 requests in flight; each request goes to the least busy."""

    def __init__(self, max_connections: int, timeout_s: float) -> None:
        count = math.ceil(max_connections / REQUESTS_PER_HTTPX_POOL)
        size, larger = divmod(max_connections, count)
        # the larger pools come first, where ties of the least-busy choice go, so the pools
        # together hold exactly max_connections
        sizes = [size + 1] * larger + [size] * (count - larger)
        self._clients = [httpx.AsyncClient(limits=_limits(n), timeout=timeout_s) for n in sizes]
        self._busy = [0] * count

    @asynccontextmanager
    async def stream(
        self, method: str, url: httpx.URL | str, *, content: bytes, headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        busy = self._busy
        index = busy.index(min(busy))
        busy[index] += 1
        try:
            async with self._clients[index].stream(method, url, content=content, headers=headers) as response:
                yield response
        finally:
            busy[index] -= 1

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients))


def error_kind(exc: BaseException) -> Literal["timeout", "connection"]:
    """Whether a transport error (one of TRANSPORT_ERRORS) was a timeout or a failed connection."""
    # httpx-aiohttp maps every aiohttp connection error, a refused connection included, to
    # httpx.ConnectTimeout, so the aiohttp error it chains decides
    cause: Any = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    if isinstance(cause, (httpx.TimeoutException, asyncio.TimeoutError)):
        return "timeout"
    return "connection"


def _limits(max_connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )

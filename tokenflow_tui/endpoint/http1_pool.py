"""The asyncio transport's client: a keep-alive pool of HTTP/1.1 connections (`http1.Http1Connection`)
behind the one method of httpx's API the handler uses, `stream()`.

At most `max_connections` connections are open or opening at any time, for every origin together.
A connection goes back to the pool only after an exchange that ended cleanly (its body read to the
end, no `Connection: close`); any other end (an error, a cancellation at any await) closes it and
frees its slot. Idle connections are dropped after `keepalive_s`, by a single timer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from .http1 import ConnectError, ConnectTimeout, Http1Connection
from .http1_response import Http1Response

USER_AGENT = f"tokenflow-tui/{__version__}"
# the routes kept by URL object: the handler has a few; a caller that makes a new URL per request
# must not grow the map without end
_ROUTES_KEPT = 64
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class _Route:
    """What is the same for every request to one URL."""

    origin: tuple[str, str, int]  # scheme, host, port: the pool's key
    host: str
    port: int
    tls: bool
    netloc: str  # the Host header
    head: bytes  # the request line and the fixed headers, Host first


class Http1Client:
    """HTTP/1.1 on raw asyncio: one pool of keep-alive connections for the whole run (transport "asyncio").

    A URL that `behind_proxy(url)` puts behind a proxy goes through the client `fallback()` makes
    (made once, when first needed): this client speaks to servers directly only.
    """

    def __init__(
        self,
        max_connections: int,
        connect_timeout_s: float,
        ssl_context: ssl.SSLContext,
        keepalive_s: float,
        behind_proxy: Callable[[str], bool],
        fallback: Callable[[], Any],
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"Http1Client: max_connections must be ≥ 1, got {max_connections}")
        self._free = max_connections  # slots of the limit not taken by an open or opening connection
        self._connect_timeout_s = connect_timeout_s
        self._ssl = ssl_context
        self._keepalive_s = keepalive_s
        self._behind_proxy = behind_proxy
        self._make_fallback = fallback
        self._fallback: Any = None
        # per origin, the idle connections, the most recently used last
        self._idle: dict[tuple[str, str, int], list[Http1Connection]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        # id(url) → (url, its route), the url kept so that its id is not reused; None: through the fallback
        self._routes: dict[int, tuple[Any, _Route | None]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        # the loop of the run, known from the first request on: asyncio.get_running_loop() makes a
        # getpid() system call on 3.11, and the pool asks for the time twice per request
        self._loop: asyncio.AbstractEventLoop | None = None
        self._headers_of: tuple[dict[str, str], dict[str, str], bytes] | None = None
        self._closed = False

    def stream(
        self, method: str, url: Any, *, content: bytes, headers: dict[str, str]
    ) -> AbstractAsyncContextManager[Any]:
        # by identity: the handler sends the same URL objects, and hashing an httpx.URL renders it
        known = self._routes.get(id(url))
        route = known[1] if known is not None and known[0] is url else self._route(url)
        if route is None:
            return self._through_fallback().stream(method, url, content=content, headers=headers)  # type: ignore[no-any-return]
        return _Exchange(self, route, method, content, headers)

    async def aclose(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in list(self._idle.values()):
            for connection in list(idle):
                self._discard(connection)
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()

    # ----- the pool

    async def _acquire(self, route: _Route) -> Http1Connection:
        """A connection to the route's origin: an idle one, a new one, or the first freed slot's."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        while True:
            idle = self._idle.get(route.origin)
            if idle:
                connection = idle.pop()
                connection.parked = False
                if connection.closed or not connection.keep_alive:  # closing, or sent bytes while idle
                    self._discard(connection)
                    continue
                if loop.time() - connection.idle_since < self._keepalive_s:
                    return connection
                # the most recent idle connection has expired, so have all older ones
                self._discard(connection)
                self._drop_idle(route.origin, len(idle))
                continue
            if self._free > 0:
                self._free -= 1
                try:
                    return await self._connect(route, loop)
                except BaseException:
                    self._free += 1
                    self._wake_one()
                    raise
            if self._drop_other_idle(route.origin):
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # the slot it was woken for is someone else's now
                elif waiter in self._waiters:  # not yet passed over by a wake-up
                    self._waiters.remove(waiter)
                raise

    async def _connect(self, route: _Route, loop: asyncio.AbstractEventLoop) -> Http1Connection:
        connection = Http1Connection(route.origin, self._lost, loop)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await loop.create_connection(
                    lambda: connection,
                    route.host,
                    route.port,
                    ssl=self._ssl if route.tls else None,
                    server_hostname=route.host if route.tls else None,
                )
        except TimeoutError as exc:
            # asyncio.timeout's, or the system's own connect timeout (ETIMEDOUT)
            message = f"no connection to {route.netloc} within {self._connect_timeout_s:g} s"
            raise ConnectTimeout(message) from exc
        except OSError as exc:  # refused, DNS, TLS (ssl.SSLError is an OSError)
            raise ConnectError(f"cannot connect to {route.netloc}: {exc}") from exc
        return connection

    def _release(self, connection: Http1Connection) -> None:
        """Back to the idle list after a clean exchange."""
        loop = self._loop
        assert loop is not None  # it was acquired
        if self._closed:
            self._discard(connection)
            return
        connection.idle_since = loop.time()
        connection.parked = True
        idle = self._idle.get(connection.origin)
        if idle is None:
            idle = self._idle[connection.origin] = []
        idle.append(connection)
        if self._sweep is None:
            self._sweep = loop.call_at(connection.idle_since + self._keepalive_s, self._expire)
        self._wake_one()

    def _discard(self, connection: Http1Connection) -> None:
        """Close the connection and free its slot (idempotent)."""
        connection.abort()
        if connection.parked:
            connection.parked = False
            self._idle[connection.origin].remove(connection)
        if connection.held:
            connection.held = False
            self._free += 1
            self._wake_one()

    def _lost(self, connection: Http1Connection) -> None:
        """The connection ended: an idle one leaves the pool now (a busy one when its exchange ends)."""
        if connection.parked:
            self._discard(connection)

    def _drop_idle(self, origin: tuple[str, str, int], count: int) -> None:
        """Close the `count` oldest idle connections of `origin`."""
        idle = self._idle[origin]
        dropped = idle[:count]
        del idle[:count]
        for connection in dropped:
            connection.parked = False
            self._discard(connection)

    def _drop_other_idle(self, origin: tuple[str, str, int]) -> bool:
        """Close the oldest idle connection of another origin, to free its slot; False if there is none."""
        for other, idle in self._idle.items():
            if other != origin and idle:
                self._discard(idle[0])
                return True
        return False

    def _expire(self) -> None:
        self._sweep = None
        loop = self._loop
        assert loop is not None  # the timer is on it
        now = loop.time()
        next_due = None
        for origin, idle in list(self._idle.items()):
            expired = 0
            for connection in idle:
                if now - connection.idle_since < self._keepalive_s:
                    due = connection.idle_since + self._keepalive_s
                    next_due = due if next_due is None else min(next_due, due)
                    break
                expired += 1
            self._drop_idle(origin, expired)
        if next_due is not None:
            self._sweep = loop.call_at(next_due, self._expire)

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # ----- routes

    def _route(self, url: Any) -> _Route | None:
        if len(self._routes) >= _ROUTES_KEPT:
            self._routes.clear()
        text = str(url)
        if self._behind_proxy(text):
            self._routes[id(url)] = (url, None)
            return None
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"the asyncio transport speaks http and https only, got {text!r}")
        host = parts.hostname
        port = parts.port or _DEFAULT_PORTS[scheme]
        netloc = parts.netloc.rpartition("@")[2]
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = (
            f"{target} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: {USER_AGENT}\r\nAccept-Encoding: gzip, deflate\r\n"
        ).encode("latin-1")
        route = _Route((scheme, host, port), host, port, scheme == "https", netloc, head)
        self._routes[id(url)] = (url, route)
        return route

    def _through_fallback(self) -> Any:
        if self._fallback is None:
            self._fallback = self._make_fallback()
        return self._fallback

    def _headers_block(self, headers: dict[str, str]) -> bytes:
        """The handler's headers as bytes; the handler sends the same dict every time, so the last is kept."""
        last = self._headers_of
        if last is not None and last[0] is headers and last[1] == headers:
            return last[2]
        block = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")
        self._headers_of = (headers, dict(headers), block)
        return block


class _Exchange:
    """`async with client.stream(...) as response`: one request on a pooled connection."""

    __slots__ = ("_client", "_route", "_method", "_content", "_headers", "_connection")

    def __init__(
        self, client: Http1Client, route: _Route, method: str, content: bytes, headers: dict[str, str]
    ) -> None:
        self._client, self._route, self._method, self._content, self._headers = client, route, method, content, headers
        self._connection: Http1Connection | None = None

    async def __aenter__(self) -> Http1Response:
        client, content = self._client, self._content
        head = b"%s %s%sContent-Length: %d\r\n\r\n" % (
            self._method.encode("ascii"),
            self._route.head,
            client._headers_block(self._headers),
            len(content),
        )
        connection = self._connection = await client._acquire(self._route)
        try:
            response_head = await connection.request(head + content, self._method == "HEAD")
        except BaseException:
            client._discard(connection)
            raise
        return Http1Response(response_head, connection)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        connection = self._connection
        assert connection is not None
        if exc_type is None and connection.reusable:
            self._client._release(connection)
        else:
            self._client._discard(connection)

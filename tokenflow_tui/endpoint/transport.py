"""The HTTP client of a run: our own HTTP/1.1 client on asyncio (default), aiohttp, or split plain-httpx
pools (DESIGN §4), behind the one method of httpx's API the handler uses, `stream()`.

One client serves the whole run; the caller closes it with `aclose()`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import aiohttp
import httpx
import yarl

from ..job.model import TRANSPORTS, TransportName
from .http1 import BodyCut, ConnectError, ConnectTimeout, Http1Error
from .http1_pool import Http1Client
from .http1_response import Http1Response

# one plain httpx pool rescans all its connections per request, so its cost grows with its size
REQUESTS_PER_HTTPX_POOL = 16
# a little under the 5 s idle timeout of common servers (uvicorn, so vLLM and SGLang), so the client
# drops an idle connection before the server does and a POST never lands on a closing socket
KEEPALIVE_EXPIRY_S = 4.0

# the most read from aiohttp's stream at once (as httpx-aiohttp reads a body)
READ_CHUNK_BYTES = 16 * 1024

# what a failing request can raise: httpx's errors (transport httpx), aiohttp's (transport aiohttp,
# and asyncio's for a URL behind a proxy), our own (transport asyncio)
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError, aiohttp.ClientError, Http1Error)


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
    # one TLS context for every pool: each one made costs tens of milliseconds and a few megabytes
    verify = httpx.create_ssl_context()
    if transport == "aiohttp":
        return AiohttpClient(max_connections, timeout_s, verify)
    if transport == "asyncio":
        # it speaks to servers directly; a URL behind a proxy goes through aiohttp instead
        return Http1Client(
            max_connections,
            timeout_s,
            verify,
            KEEPALIVE_EXPIRY_S,
            behind_proxy=_behind_proxy,
            fallback=lambda: AiohttpClient(max_connections, timeout_s, verify),
        )
    if transport == "httpx":
        count = math.ceil(max_connections / REQUESTS_PER_HTTPX_POOL)
        size, larger = divmod(max_connections, count)
        # the larger pools come first, where ties of the least-busy choice go, so the pools
        # together hold exactly max_connections
        sizes = [size + 1] * larger + [size] * (count - larger)
        return DirectClient([httpx.AsyncClient(limits=_limits(n), verify=verify) for n in sizes], timeout_s)
    raise ValueError(f"make_client: transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")


class AiohttpResponse(aiohttp.ClientResponse):
    """aiohttp's response, with the two names of httpx.Response the handler reads (and `aread` for tests)."""

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def reason_phrase(self) -> str:
        return self.reason or ""

    async def aread(self) -> bytes:
        return await self.read()


class AiohttpClient:
    """One aiohttp ClientSession, straight: no httpx Request or Response per request.

    httpx's Request, Headers and Response over httpx-aiohttp cost about a tenth of the client's CPU per
    request, for nothing the handler needs. It honours HTTP(S)_PROXY and NO_PROXY as httpx does,
    keeps connections alive for KEEPALIVE_EXPIRY_S and verifies TLS with the given context.
    """

    def __init__(self, max_connections: int, timeout_s: float, verify: Any) -> None:
        self._max_connections = max_connections
        self._verify = verify
        # only making a connection has its own timeout: the caller bounds the whole exchange (the
        # handler's deadline), and a total timeout would cost a timer per request
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._routes: dict[httpx.URL | str, _AiohttpRoute] = {}

    def stream(
        self, method: str, url: httpx.URL | str, *, content: bytes, headers: dict[str, str]
    ) -> AbstractAsyncContextManager[httpx.Response]:
        session = self._session or self._open()
        route = self._routes.get(url) or self._route(url)
        exchange = session.request(
            method,
            route.url,
            data=content,
            headers=headers,
            allow_redirects=False,
            proxy=route.proxy,
            proxy_auth=route.proxy_auth,
        )
        # an AiohttpResponse answers what the handler and the functions below read of an httpx.Response
        return cast(AbstractAsyncContextManager[httpx.Response], exchange)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _route(self, url: httpx.URL | str) -> _AiohttpRoute:
        target = yarl.URL(str(url), encoded=True)
        # the proxy from HTTP(S)_PROXY and NO_PROXY, once per URL: the session's trust_env would look
        # it up (and ~/.netrc) in a thread for every request
        route = self._routes[url] = _AiohttpRoute(target, *_env_proxy(target))
        return route

    def _open(self) -> aiohttp.ClientSession:
        # made on the first request, inside the running loop, as aiohttp wants it
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=KEEPALIVE_EXPIRY_S, ssl=self._verify
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            response_class=AiohttpResponse,
            timeout=self._timeout,
            # an API client keeps no cookies (nor did httpx's transport under the handler): a jar
            # would be searched for every request and filled from every answer that sets one
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session


def _env_proxy(target: yarl.URL) -> tuple[yarl.URL | None, aiohttp.BasicAuth | None]:
    """The proxy (and its credentials) that HTTP(S)_PROXY and NO_PROXY give `target`, as aiohttp and httpx
    read them; (None, None) for none."""
    try:
        return aiohttp.helpers.get_env_proxy_for_url(target)
    except LookupError:
        return None, None


def _behind_proxy(url: str) -> bool:
    """Whether HTTP(S)_PROXY and NO_PROXY send `url` through a proxy."""
    return _env_proxy(yarl.URL(url, encoded=True))[0] is not None


@dataclass(frozen=True, slots=True)
class _AiohttpRoute:
    url: yarl.URL
    proxy: yarl.URL | None  # from the environment
    proxy_auth: aiohttp.BasicAuth | None


class DirectClient:
    """httpx's Request and Response straight over the transports of one or more httpx.AsyncClients.

    The client's send() costs as much CPU as the transport under it (it builds a cookie jar request
    per response, runs the auth and redirect flows, wraps the stream), and the built-in handler
    needs none of that. The clients still choose the transport of a URL (their pool, or a proxy from
    the environment), once per URL. With several clients (split plain-httpx pools), each request goes
    to the least busy.
    """

    def __init__(self, clients: list[httpx.AsyncClient], timeout_s: float) -> None:
        self._clients = clients
        self._busy = [0] * len(clients)
        self._routes: dict[httpx.URL | str, _Route] = {}
        # only making a connection has its own timeout: the caller bounds the whole exchange (the
        # handler's deadline), and read and pool timeouts would cost a timer per read and per request
        self._extensions = {"timeout": httpx.Timeout(None, connect=timeout_s).as_dict()}

    def stream(
        self, method: str, url: httpx.URL | str, *, content: bytes, headers: dict[str, str]
    ) -> AbstractAsyncContextManager[httpx.Response]:
        return _Exchange(self, method, url, content, headers)

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients))

    def _route(self, url: httpx.URL | str) -> _Route:
        route = self._routes.get(url)
        if route is None:
            parsed = httpx.URL(url)
            # a private method of httpx, but the one that honours HTTP(S)_PROXY and NO_PROXY as the client would
            transports = [client._transport_for_url(parsed) for client in self._clients]
            route = self._routes[url] = _Route(parsed, parsed.netloc.decode("ascii"), transports)
        return route


@dataclass(frozen=True, slots=True)
class _Route:
    url: httpx.URL
    host: str  # the Host header
    transports: list[httpx.AsyncBaseTransport]  # one per client


class _Exchange:
    """`async with client.stream(...) as response`: one request, and its response closed at the end."""

    __slots__ = ("_client", "_method", "_url", "_content", "_headers", "_index", "_response")

    def __init__(
        self, client: DirectClient, method: str, url: httpx.URL | str, content: bytes, headers: dict[str, str]
    ) -> None:
        self._client, self._method, self._url, self._content, self._headers = client, method, url, content, headers

    async def __aenter__(self) -> httpx.Response:
        client, content = self._client, self._content
        route = client._route(self._url)
        # the headers Request(content=...) would work out (Host first, Content-Length last), given
        # whole: httpx's own working out costs three times as much as making the request this way
        headers = [("Host", route.host), *self._headers.items(), ("Content-Length", str(len(content)))]
        request = httpx.Request(
            self._method, route.url, headers=headers, stream=httpx.ByteStream(content), extensions=client._extensions
        )
        request.read()  # as Request(content=...) does: transports send request.content
        busy = client._busy
        index = self._index = busy.index(min(busy))
        busy[index] += 1
        try:
            self._response = await route.transports[index].handle_async_request(request)
        except BaseException:
            busy[index] -= 1
            raise
        return self._response

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            raw = _aiohttp_response(self._response)
            if raw is None:
                await self._response.aclose()
            else:
                # what Response.aclose() ends in, without its two context managers
                await raw.__aexit__(None, None, None)
        finally:
            self._client._busy[self._index] -= 1


class BodyCutShort(Exception):
    """The connection failed while the body was read; `partial` is what arrived, for the record's excerpt."""

    def __init__(self, error: Exception, partial: bytes) -> None:
        super().__init__(str(error))
        self.error = error
        self.partial = partial


async def read_body(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The body, or as much as fits in `limit` bytes and False when it is larger (one declared larger is not read).

    A connection that fails midway raises BodyCutShort with what arrived; a timeout raises as it is.
    """
    if type(response) is Http1Response:  # type: ignore[comparison-overlap]
        if _declared_over(response.headers.get("content-length"), limit):
            return b"", False
        try:
            return await response.read_body(limit)
        except BodyCut as cut:
            raise BodyCutShort(cut, cut.partial) from cut
    chunks: list[bytes] = []
    try:
        return await _read_body(response, limit, chunks)
    except TRANSPORT_ERRORS as exc:
        if error_kind(exc) == "timeout":
            raise
        raise BodyCutShort(exc, b"".join(chunks)) from exc


async def _read_body(response: httpx.Response, limit: int, chunks: list[bytes]) -> tuple[bytes, bool]:
    raw = _aiohttp_response(response)
    if raw is None:
        return await _read_decoded(response, limit, chunks)
    # aiohttp's stream is already decoded (a compressed body too), and read at once, not through an
    # async generator per response
    if _declared_over(raw.headers.get("Content-Length"), limit):
        return b"", False
    content = raw.content
    size = 0
    while True:
        chunk = await content.read(READ_CHUNK_BYTES)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), False
        chunks.append(chunk)
        if content.at_eof():
            # one chunk is the common case: no copy
            return chunks[0] if len(chunks) == 1 else b"".join(chunks), True


def chunk_reader(response: httpx.Response) -> Callable[[], Awaitable[bytes]]:
    """A function that returns the body's next bytes as they arrive, and b"" at its end (for streamed answers)."""
    if type(response) is Http1Response:  # type: ignore[comparison-overlap]
        return response.read_chunk
    raw = _aiohttp_response(response)
    if raw is not None:
        # whatever has arrived, at once: an event must not wait for a buffer to fill
        return raw.content.readany
    chunks = response.aiter_bytes()

    async def read() -> bytes:
        try:
            return await anext(chunks)
        except StopAsyncIteration:
            return b""

    return read


async def _read_decoded(response: httpx.Response, limit: int, chunks: list[bytes]) -> tuple[bytes, bool]:
    if _declared_over(response.headers.get("content-length"), limit):
        return b"", False
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"".join(chunks), True


def response_headers(response: httpx.Response) -> Mapping[str, str]:
    """The response's headers, case-insensitive; the first value of a repeated one.

    Over aiohttp they are aiohttp's own map, over asyncio a dict by lower-case name (a lookup in
    httpx.Headers scans and decodes every header, about twenty times the cost).
    """
    if type(response) is Http1Response:  # type: ignore[comparison-overlap]
        return response.headers
    raw = _aiohttp_response(response)
    return response.headers if raw is None else raw.headers


def _declared_over(content_length: str | None, limit: int) -> bool:
    return content_length is not None and content_length.isdigit() and int(content_length) > limit


def _aiohttp_response(response: httpx.Response) -> aiohttp.ClientResponse | None:
    """The response of the aiohttp transport (None for an httpx one)."""
    return response if type(response) is AiohttpResponse else None  # type: ignore[comparison-overlap]


def error_kind(exc: BaseException) -> Literal["timeout", "connection"]:
    """Whether a transport error (one of TRANSPORT_ERRORS) was a timeout or a failed connection."""
    # an error wrapped around an aiohttp one (httpx-aiohttp maps every aiohttp connection error, a
    # refused connection included, to httpx.ConnectTimeout) is judged by the aiohttp error
    cause: Any = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    if isinstance(cause, (httpx.TimeoutException, asyncio.TimeoutError, ConnectTimeout)):
        return "timeout"
    return "connection"


def failed_to_connect(exc: BaseException) -> bool:
    """Whether a transport error means the server was never reached: refused, DNS, TLS, a connect timeout.

    A reset or a read timeout is not: the connection was made.
    """
    if isinstance(exc, Http1Error):
        return isinstance(exc, ConnectError)
    cause: Any = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    if isinstance(cause, aiohttp.ClientError):
        return isinstance(cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
    return isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout))


def _limits(max_connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )

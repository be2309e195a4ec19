"""One HTTP/1.1 client connection on raw asyncio: an asyncio.Protocol that parses the response as it
arrives (status line, headers, a body by Content-Length, chunked or to the close) and wakes the one
task waiting on it (transport "asyncio", DESIGN §4).

No StreamReader: the bytes go from `data_received` straight into the body's pieces, and a response
that arrives in one read (the common case) costs its task a single wake-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# a response head larger than this is refused: no real API sends one
MAX_HEAD_BYTES = 64 * 1024

# what the connection waits for (the parser's states)
_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _TO_CLOSE, _DONE = range(9)
# what wakes the waiting task, besides an error
_WANT_HEAD, _WANT_BODY, _WANT_DATA = range(3)


class Http1Error(Exception):
    """A failed exchange of the asyncio transport."""


class ConnectError(Http1Error):
    """The server was never reached: refused, DNS, TLS."""


class ConnectTimeout(ConnectError):
    """No connection within the connect timeout."""


class ConnectionBroken(Http1Error):
    """The connection failed after it was made: reset, or closed before the response ended."""


class MalformedResponse(ConnectionBroken):
    """The server's bytes are not an HTTP/1.1 response."""


class BodyCut(ConnectionBroken):
    """The connection failed while the body was read; `partial` is what arrived of it."""

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(message)
        self.partial = partial


class Headers(dict[str, str]):
    """Response headers by lower-case name (the first value of a repeated one); lookups ignore case."""

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


class Head:
    """A parsed status line and headers."""

    __slots__ = ("status_code", "reason_phrase", "headers")

    def __init__(self, status_code: int, reason_phrase: str, headers: Headers) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection: one exchange at a time, `request()` then `read()` or `read_available()`.

    `on_lost(connection)` hears of the connection's end, whoever ended it.
    """

    __slots__ = (
        "origin",
        "idle_since",
        "held",
        "parked",
        "keep_alive",
        "closed",
        "_on_lost",
        "_loop",
        "_transport",
        "_state",
        "_want",
        "_limit",
        "_buffer",
        "_remaining",
        "_head",
        "_pieces",
        "_size",
        "_error",
        "_waiter",
        "_no_body",
    )

    def __init__(
        self, origin: Any, on_lost: Callable[[Http1Connection], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self.held = True  # counted in its pool's limit (until discarded, or lost while idle)
        self.parked = False  # in its pool's idle list
        self.keep_alive = True
        self.closed = False
        self._on_lost = on_lost
        # given, not asked for: asyncio.get_running_loop() makes a getpid() system call on 3.11
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._state = _IDLE
        self._want = _WANT_HEAD
        self._limit = 0
        self._buffer = b""
        self._remaining = 0
        self._head: Head | None = None
        self._pieces: list[bytes] = []
        self._size = 0  # bytes of the body received
        self._error: Http1Error | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._no_body = False

    # ----- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        state = self._state
        if state == _TO_CLOSE:
            self._state = _DONE
        elif state == _HEAD:
            reason = f": {exc}" if exc else ""
            self._error = ConnectionBroken(f"the server closed the connection before answering{reason}")
        elif state != _IDLE and state != _DONE:
            reason = f": {exc}" if exc else ""
            self._error = BodyCut(f"the connection closed before the body ended{reason}", b"".join(self._pieces))
        self._wake()
        self._on_lost(self)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        try:
            self._parse(data)
        except MalformedResponse as exc:
            # past the head it cuts the body short: what came of it is kept
            self._error = exc if self._head is None else BodyCut(str(exc), b"".join(self._pieces))
            self.keep_alive = False
            self._state = _DONE
            self.abort()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True  # before connection_lost, which comes a loop turn later
        return False  # the transport closes, and connection_lost ends a body read to the close

    # ----- the exchange

    async def request(self, data: bytes, no_body: bool) -> Head:
        """Send one request (`data`: its head and body) and wait for the response's head.

        `no_body`: the response has none whatever it declares (a HEAD request).
        """
        if self.closed:  # its end was heard after the pool handed it out
            raise ConnectionBroken("the server closed the connection before the request was sent")
        self._state = _HEAD
        self._want = _WANT_HEAD
        self._no_body = no_body
        self._head = None
        self._pieces = []
        self._size = 0
        assert self._transport is not None
        self._transport.write(data)
        while self._head is None:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._head

    async def read(self, limit: int) -> tuple[list[bytes], bool]:
        """The body's pieces once it has all arrived, or once more than `limit` bytes have (then False)."""
        self._want = _WANT_BODY
        self._limit = limit
        while self._state != _DONE:
            if self._error is not None:
                raise self._error
            if self._size > limit:
                self.keep_alive = False  # the rest is not read
                return self._pieces, False
            await self._wait()
        if self._error is not None:
            raise self._error
        return self._pieces, self._size <= limit

    async def read_available(self) -> bytes:
        """The body's bytes arrived since the last call, waiting for some; b"" at its end."""
        self._want = _WANT_DATA
        while not self._pieces:
            if self._error is not None:
                raise self._error
            if self._state == _DONE:
                return b""
            await self._wait()
        pieces = self._pieces
        self._pieces = []
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    @property
    def reusable(self) -> bool:
        """Whether the last exchange ended cleanly and the connection may carry another."""
        return self._state == _DONE and self.keep_alive and not self.closed and self._error is None

    def abort(self) -> None:
        """Close at once, unsent bytes dropped (an exchange cut short leaves nothing worth sending)."""
        self.keep_alive = False
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        want = self._want
        if (
            self._error is not None
            or (want == _WANT_HEAD and self._head is not None)
            or (want == _WANT_BODY and (self._state == _DONE or self._size > self._limit))
            or (want == _WANT_DATA and (self._pieces or self._state == _DONE))
        ):
            waiter.set_result(None)

    # ----- parsing

    def _parse(self, data: bytes) -> None:
        while data:
            state = self._state
            if state == _LENGTH or state == _CHUNK_DATA:
                remaining = self._remaining
                if len(data) < remaining:
                    self._take(data)
                    self._remaining = remaining - len(data)
                    return
                self._take(data[:remaining] if len(data) > remaining else data)
                data = data[remaining:]
                self._state = _DONE if state == _LENGTH else _CHUNK_END
            elif state == _HEAD:
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    if len(data) > MAX_HEAD_BYTES:
                        raise MalformedResponse(f"the response head is larger than {MAX_HEAD_BYTES} bytes")
                    self._buffer = data
                    return
                self._start(data[:end])
                data = data[end + 4 :]
            elif state == _CHUNK_SIZE or state == _TRAILERS:
                end = data.find(b"\r\n")
                if end < 0:
                    if len(data) > MAX_HEAD_BYTES:
                        raise MalformedResponse("a chunk-size or trailer line is too long")
                    self._buffer = data
                    return
                line = data[:end]
                data = data[end + 2 :]
                if state == _TRAILERS:
                    if not line:
                        self._state = _DONE
                    continue
                size_text = line.partition(b";")[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise MalformedResponse(f"a bad chunk size {bytes(line[:40])!r}") from None
                if size < 0:
                    raise MalformedResponse(f"a bad chunk size {bytes(line[:40])!r}")
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_END:
                if len(data) < 2:
                    self._buffer = data
                    return
                if data[:2] != b"\r\n":
                    raise MalformedResponse("a chunk does not end in CRLF")
                data = data[2:]
                self._state = _CHUNK_SIZE
            elif state == _TO_CLOSE:
                self._take(data)
                return
            else:
                # bytes nobody asked for (after the response, or between exchanges): the
                # connection's framing cannot be trusted any more
                self.keep_alive = False
                return

    def _take(self, piece: bytes) -> None:
        self._size += len(piece)
        # past the limit of a whole-body read the rest is dropped: the reader stops there
        if self._want != _WANT_BODY or self._size <= self._limit or not self._pieces:
            self._pieces.append(piece)

    def _start(self, head: bytes) -> None:
        """The response's status line and headers, and how its body is framed."""
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise MalformedResponse(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        headers = Headers()
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise MalformedResponse(f"a header line without a colon: {line[:80]!r}")
            # the first value of a repeated header stands
            headers.setdefault(name.lower(), value.strip())
        status = int(code)
        if status < 200:
            # an interim response (100 Continue, 103 Early Hints): the real one follows
            return
        connection = dict.get(headers, "connection", "").lower()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        elif "close" in connection:
            self.keep_alive = False
        if self._no_body or status == 204 or status == 304:
            self._state = _DONE
        elif "chunked" in dict.get(headers, "transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        else:
            length = dict.get(headers, "content-length")
            if length is None:
                self._state = _TO_CLOSE
                self.keep_alive = False
            elif not length.isdigit():
                raise MalformedResponse(f"a bad Content-Length {length[:40]!r}")
            else:
                self._remaining = int(length)
                self._state = _LENGTH if self._remaining else _DONE
        self._head = Head(status, reason, headers)

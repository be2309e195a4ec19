"""One client connection: takes its requests in order and carries out each reply (send, drip, stream, reset, stall)."""

from __future__ import annotations

import asyncio
import enum
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .http import HttpError, Request, parse_request

DRIP_BYTES = 4
# SO_LINGER on with a zero timeout: closing sends an RST, as a crashed server or proxy would.
_LINGER_RESET = struct.pack("ii", 1, 0)


class How(enum.Enum):
    SEND = "send"  # head and body at once; then the connection closes if the reply says so
    DRIP = "drip"  # head, then the body a few bytes at a time
    STREAM = "stream"  # head, then `chunks` as fast as the client reads them
    PACED = "paced"  # head, then `events` `pace_s` apart (all at once for 0); then as `then` says
    RESET = "reset"  # no answer: the connection is aborted with an RST
    STALL = "stall"  # no answer: the connection closes after a long while


@dataclass(slots=True)
class Reply:
    """What to do with one request, after `delay_s`."""

    how: How = How.SEND
    head: bytes = b""
    body: bytes = b""
    chunks: Iterator[bytes] | None = None
    delay_s: float = 0.0
    close: bool = False
    events: list[bytes] | None = None
    pace_s: float = 0.0
    then: How = How.SEND  # after the events: SEND ends the reply, RESET or STALL as those do


class Host(Protocol):
    """What a connection needs from its server."""

    drip_s: float
    stall_s: float

    def reply(self, request: Request) -> Reply: ...

    def reject(self, error: HttpError) -> Reply: ...

    def opened(self, connection: Connection) -> None: ...

    def lost(self, connection: Connection) -> None: ...


class Connection(asyncio.Protocol):
    """Requests are answered one at a time; pipelined ones wait in the buffer, so answers keep their order."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._reply: Reply | None = None  # the reply in progress
        self._keep_alive = True
        self._serving = False
        self._timer: asyncio.TimerHandle | None = None
        self._chunks: Iterator[bytes] | None = None  # the body being streamed
        self._drip_at = 0
        self._event_at = 0
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._host.opened(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._reply is None and not self._serving:
            self._serve()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._reply = None
        self._chunks = None
        self._host.lost(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._chunks is not None:
            self._pump()

    def abort(self) -> None:
        """Drop the connection now, whatever it is doing."""
        self._stop_timer()
        if self._transport is not None:
            self._transport.abort()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _serve(self) -> None:
        """Start the replies to the whole requests in the buffer, one at a time."""
        transport = self._transport
        assert transport is not None
        self._serving = True
        try:
            while self._buffer and self._reply is None and not transport.is_closing():
                try:
                    request = parse_request(self._buffer)
                except HttpError as error:
                    self._buffer.clear()
                    self._keep_alive = False
                    self._start(self._host.reject(error))
                    return
                if request is None:
                    return
                self._keep_alive = request.keep_alive
                self._start(self._host.reply(request))
        finally:
            self._serving = False

    def _start(self, reply: Reply) -> None:
        self._reply = reply
        if reply.delay_s > 0:
            self._timer = self._loop.call_later(reply.delay_s, self._perform)
        else:
            self._perform()

    def _perform(self) -> None:
        reply, transport = self._reply, self._transport
        assert reply is not None and transport is not None
        self._timer = None
        how = reply.how
        if how is How.SEND:
            transport.write(reply.head + reply.body)
            self._finish()
        elif how is How.STREAM:
            transport.write(reply.head)
            self._chunks = reply.chunks
            self._pump()
        elif how is How.DRIP:
            transport.write(reply.head)
            self._drip_at = 0
            self._timer = self._loop.call_later(self._host.drip_s, self._drip)
        elif how is How.PACED:
            transport.write(reply.head)
            self._event_at = 0
            self._next_event()
        else:
            self._end(how, transport)

    def _end(self, how: How, transport: asyncio.Transport) -> None:
        """A reply with no answer, or the end of a paced one: RESET, STALL, or (SEND) the reply is over."""
        if how is How.RESET:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
        elif how is How.STALL:
            self._timer = self._loop.call_later(self._host.stall_s, transport.close)
        else:
            self._finish()

    def _next_event(self) -> None:
        reply, transport = self._reply, self._transport
        assert reply is not None and transport is not None and reply.events is not None
        self._timer = None
        events = reply.events
        if reply.pace_s > 0:
            transport.write(events[self._event_at])
            self._event_at += 1
        else:
            transport.write(b"".join(events[self._event_at :]))
            self._event_at = len(events)
        if self._event_at < len(events):
            self._timer = self._loop.call_later(reply.pace_s, self._next_event)
        else:
            self._end(reply.then, transport)

    def _drip(self) -> None:
        reply, transport = self._reply, self._transport
        assert reply is not None and transport is not None
        transport.write(reply.body[self._drip_at : self._drip_at + DRIP_BYTES])
        self._drip_at += DRIP_BYTES
        if self._drip_at < len(reply.body):
            self._timer = self._loop.call_later(self._host.drip_s, self._drip)
        else:
            self._timer = None
            self._finish()

    def _pump(self) -> None:
        """Write the streamed body until the transport's buffer is full; resume_writing comes back here."""
        transport, chunks = self._transport, self._chunks
        assert transport is not None and chunks is not None
        for chunk in chunks:
            if transport.is_closing():
                return
            transport.write(chunk)
            if self._paused:
                return
        self._chunks = None
        self._finish()

    def _finish(self) -> None:
        reply, transport = self._reply, self._transport
        assert reply is not None and transport is not None
        self._reply = None
        if reply.close or not self._keep_alive:
            transport.close()
        elif self._buffer and not self._serving:
            self._serve()

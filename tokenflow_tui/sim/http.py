"""Just enough HTTP/1.1 for the simulator: taking requests off a byte buffer, framing responses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """The bytes received are not a request the simulator can read; the connection must close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes
    authorization: bytes | None
    keep_alive: bool


def parse_request(buffer: bytearray) -> Request | None:
    """Take one whole request off the front of `buffer`; None (buffer untouched) while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise HttpError(431, "the request head is too large")
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise HttpError(400, "the request line is not METHOD PATH HTTP/1.x")
    method, target, version = parts
    keep_alive = version == b"HTTP/1.1"
    length = 0
    authorization = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise HttpError(400, "a header line has no colon")
        name = name.lower()
        if name == b"content-length":
            if not value.strip().isdigit():
                raise HttpError(400, "the Content-Length is not a number")
            length = int(value)
        elif name == b"authorization":
            authorization = value.strip()
        elif name == b"connection":
            token = value.strip().lower()
            if token == b"close":
                keep_alive = False
            elif token == b"keep-alive":
                keep_alive = True
        elif name == b"transfer-encoding":
            raise HttpError(501, "request bodies must have a Content-Length, not a Transfer-Encoding")
    if length > MAX_BODY_BYTES:
        raise HttpError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    start = end + 4
    if len(buffer) < start + length:
        return None
    body = bytes(buffer[start : start + length])
    del buffer[: start + length]
    path = target.partition(b"?")[0].decode("latin-1")
    return Request(method.decode("latin-1"), path, body, authorization, keep_alive)


def response_head(
    status: int,
    content_type: str,
    length: int | None,
    headers: Iterable[tuple[str, str]] = (),
    close: bool = False,
) -> bytes:
    """A response's status line and headers; `length` None means a chunked body."""
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    connection = "Connection: close\r\n" if close else ""
    return (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n{framing}\r\n{extra}{connection}\r\n"
    ).encode("latin-1")


LAST_CHUNK = b"0\r\n\r\n"


def chunk(piece: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def chunked(pieces: Iterable[bytes]) -> bytes:
    """A chunked body: each piece one chunk, then the last, empty chunk."""
    return b"".join(chunk(piece) for piece in pieces) + LAST_CHUNK

"""The response of the asyncio transport: the names of httpx.Response the handler reads, over one
connection's body, decoded when the server compressed it (gzip, deflate)."""

from __future__ import annotations

import sys
import zlib

from .http1 import BodyCut, Head, Headers, Http1Connection

_ENCODINGS = ("gzip", "x-gzip", "deflate")


class Http1Response:
    """One response; its body is read once, whole (`read_body`) or as it arrives (`read_chunk`)."""

    __slots__ = ("status_code", "reason_phrase", "headers", "_connection", "_decoder", "_encoding")

    def __init__(self, head: Head, connection: Http1Connection) -> None:
        self.status_code = head.status_code
        self.reason_phrase = head.reason_phrase
        self.headers: Headers = head.headers
        self._connection = connection
        encoding = dict.get(self.headers, "content-encoding", "").strip().lower()
        self._encoding = encoding if encoding in _ENCODINGS else ""
        self._decoder: zlib._Decompress | None = None

    async def read_body(self, limit: int) -> tuple[bytes, bool]:
        """The (decoded) body, or its first `limit` bytes or more and False when it is larger."""
        pieces, complete = await self._connection.read(limit)
        # one piece is the common case: no copy
        body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if not self._encoding or not body:
            return body, complete
        decoded = self._decode(body, limit + 1)
        return decoded, complete and len(decoded) <= limit

    async def read_chunk(self) -> bytes:
        """The (decoded) bytes that arrived since the last call, waiting for some; b"" at the body's end."""
        while True:
            data = await self._connection.read_available()
            if not self._encoding:
                return data
            if not data:
                decoder, self._decoder = self._decoder, None
                return decoder.flush() if decoder is not None else b""
            decoded = self._decode(data, 0)
            # bytes that decode to nothing yet (a header, a partial block) are not the end
            if decoded:
                return decoded

    async def aread(self) -> bytes:
        body, _ = await self.read_body(sys.maxsize)
        return body

    def _decode(self, data: bytes, max_length: int) -> bytes:
        """`data` (not empty) decoded, at most `max_length` bytes of it (0: all)."""
        decoder = self._decoder
        if decoder is None:
            # "deflate" is meant to be zlib-wrapped, but some servers send it raw; gzip and zlib
            # are told apart by their header
            raw = self._encoding == "deflate" and (data[0] & 0x0F) != 8
            decoder = self._decoder = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS | 32)
        try:
            return decoder.decompress(data, max_length)
        except zlib.error as exc:
            raise BodyCut(f"the {self._encoding} body does not decode: {exc}", data[:256]) from exc

"""Server-sent events (text/event-stream) read incrementally: bytes in as they arrive, each event's data out.

Only `data:` fields matter to a completion stream; `event:`, `id:`, `retry:` and comments are skipped.
Lines end in LF or CRLF (what OpenAI, vLLM, SGLang and llama.cpp send); a lone CR is not a line end here.
"""

from __future__ import annotations


class EventReader:
    """`feed(chunk)` returns the data of every event the chunk completed, in order; `end()` the one left open."""

    __slots__ = ("_rest", "_data")

    def __init__(self) -> None:
        self._rest = b""  # an incomplete line, waiting for the rest of it
        self._data: list[bytes] = []  # the data lines of the event being read

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._rest + chunk if self._rest else chunk
        lines = buffer.split(b"\n")
        self._rest = lines.pop()
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line == b"data":
                data.append(b"")
        return events

    def end(self) -> list[bytes]:
        """At the end of the stream: the data of an event that lacked its closing blank line, if any."""
        events = self.feed(b"\n\n") if self._rest or self._data else []
        self._rest = b""
        return events

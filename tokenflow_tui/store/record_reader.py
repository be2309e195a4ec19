"""One record of results.jsonl read back by its byte offset, while the run goes on appending."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .results_file import ResultsWriter

_FIRST_READ = 1 << 16
_BLOCK = 1 << 20


class RecordReader:
    """Reads records from the writer's buffer when they are not yet in the file, else from the disk."""

    def __init__(self, writer: ResultsWriter) -> None:
        self._writer = writer
        self._fd: int | None = os.open(writer.path, os.O_RDONLY)

    def read(self, offset: int) -> dict[str, Any] | None:
        """The record at `offset`, or None for no record (offset -1, a closed reader, a line that is not JSON)."""
        if offset < 0 or self._fd is None:
            return None
        line = self._writer.pending_line(offset)
        size = _FIRST_READ
        while line is None:
            chunk = os.pread(self._fd, size, offset)
            end = chunk.find(b"\n")
            if end >= 0 or len(chunk) < size:
                line = chunk[:end] if end >= 0 else chunk
            size *= 4  # a long answer: read on until the record's end
        try:
            record: dict[str, Any] = orjson.loads(line)
            return record
        except orjson.JSONDecodeError:
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def record_lines(path: str | os.PathLike[str], end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line without its newline) of each whole line in the first `end` bytes, read a block at a time.

    A generator, so that a caller can read a million records a slice at a time; the file is opened
    by path, so it reads a closed run's results too. Nothing when the file is missing.
    """
    try:
        file = open(Path(path), "rb")  # noqa: SIM115 - held across the generator's pauses
    except FileNotFoundError:
        return
    with file:
        offset, rest = 0, b""
        while offset + len(rest) < end:
            block = file.read(min(_BLOCK, end - offset - len(rest)))
            if not block:
                return
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                yield offset, line
                offset += len(line) + 1

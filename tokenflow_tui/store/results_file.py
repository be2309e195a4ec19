"""results.jsonl: appending finished records, and recovering what an earlier run left.

The writer only ever leaves whole lines in the file; recovery cuts a torn last line (a crash during
a write) and refuses a file damaged anywhere else without touching it. Each save can keep a
`ResultsSummary` (size, CRC-32, counts) in state.toml: recovery then reads the per-request status
of the part the summary vouches for from the fixed key order, without parsing every record again.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from itertools import accumulate, chain, repeat
from operator import add
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .errors import StoreError, os_reason
from .files import fsync_directory
from .records import encode_record

RESULTS_FILE = "results.jsonl"
DAMAGED_FILE = "results.damaged.jsonl"  # where `tokenflow repair` moves the lines that are not records
FLUSH_BYTES = 1 << 20
# how often a run writes its finished records without waiting for the buffer to fill: what a
# kill -9 loses (and the next run sends again) is at most this much of the run's records
WRITE_INTERVAL_S = 0.2
READ_BYTES = 8 << 20
NO_RECORD, DONE, FAILED = 0, 1, 2
STATUS_NAMES = {DONE: "done", FAILED: "failed"}
_STATUS_CODES = {"done": DONE, "failed": FAILED}
# the start of a record as encode_record writes it, for an id that is an int or a plain string;
# a line that does not match is parsed in full
_HEAD = re.compile(rb'\n\{"id":(?:"[^"\\\n]*"|-?[0-9]+),"index":([0-9]+),"status":"([df])')
_HEAD_CODES = bytes.maketrans(b"df", bytes([DONE, FAILED]))


@dataclass(frozen=True, slots=True)
class ResultsSummary:
    """The first `size` bytes of results.jsonl in a few numbers (tokens and attempts summed over records)."""

    size: int = 0
    crc32: int = 0
    records: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    attempts: int = 0

    def to_data(self) -> dict[str, int]:
        """For state.toml."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_data(cls, data: Any) -> ResultsSummary | None:
        """The summary saved by `to_data`, or None when `data` is not one."""
        if not isinstance(data, dict):
            return None
        values: dict[str, Any] = {f.name: data.get(f.name) for f in fields(cls)}
        if not all(type(v) is int and v >= 0 for v in values.values()):
            return None
        return cls(**values)


# ----- writing ---------------------------------------------------------------------------------


class ResultsWriter:
    """Appends records to results.jsonl, buffered, in whole lines only.

    `start` is the summary of the file as it is (`Recovery.summary`); a new file starts empty.
    `flush` may run in another thread (to keep fsync off an event loop) while `append` goes on.
    When a write or fsync fails, the records not yet in the file stay in memory and the next
    `flush` tries again.
    """

    def __init__(self, path: str | os.PathLike[str], start: ResultsSummary | None = None) -> None:
        self.path = Path(path)
        start = start or ResultsSummary()
        created = not self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot open for writing ({os_reason(e)}).") from None
        size = os.fstat(self._fd).st_size
        if size != start.size:
            os.close(self._fd)
            raise StoreError(
                f"{self.path}: holds {size} bytes where {start.size} were expected; recover it before appending."
            )
        self._lock = threading.Lock()  # the buffer and the counts
        self._io_lock = threading.Lock()  # one write or fsync at a time
        self._written = start
        self._pending = bytearray()
        self._pending_counts = [0, 0, 0, 0, 0]  # records, prompt, completion, total tokens, attempts
        self._in_transit = b""  # being written by a flush; still readable through pending_line
        self._in_transit_records = 0
        self._auto_write = True  # off after a failed write, until a flush succeeds
        self._unsynced = created  # a new file's directory entry must reach the disk too
        self._sync_dir = created
        self._broken: str | None = None

    @property
    def summary(self) -> ResultsSummary:
        """What the file holds (written, maybe not yet fsynced)."""
        return self._written

    @property
    def records(self) -> int:
        """Records in the file plus those still buffered."""
        with self._lock:
            return self._written.records + self._pending_counts[0] + self._in_transit_records

    @property
    def failing(self) -> bool:
        """The last write failed (a full disk): records wait in memory until a `flush` succeeds."""
        return not self._auto_write

    @property
    def buffered(self) -> int:
        """Records appended but not yet written to the file."""
        with self._lock:
            return self._pending_counts[0] + self._in_transit_records

    def append(self, record: dict[str, Any]) -> int:
        """Add a record (see records.build_record); returns its byte offset in the file.

        Writes (without fsync, see `write_buffered`) once the buffer passes FLUSH_BYTES.
        """
        line = encode_record(record)
        usage = record["usage"]
        with self._lock:
            offset = self._written.size + len(self._in_transit) + len(self._pending)
            self._pending += line
            counts = self._pending_counts
            counts[0] += 1
            if usage is not None:
                counts[1] += usage.get("prompt_tokens") or 0
                counts[2] += usage.get("completion_tokens") or 0
                counts[3] += usage.get("total_tokens") or 0
            counts[4] += len(record["attempts"])
            full = len(self._pending) >= FLUSH_BYTES
        if full:
            self.write_buffered()
        return offset

    def write_buffered(self) -> None:
        """Write the buffered records without fsync, unless a flush is writing already.

        Never raises for the disk: after a failed write, records wait in memory for `flush`.
        """
        if not self._auto_write or not self._io_lock.acquire(blocking=False):
            return
        try:
            self._write()
        except StoreError:
            # the next save reports it; a sink that raised on every record would flood the log
            self._auto_write = False
        finally:
            self._io_lock.release()

    def pending_line(self, offset: int) -> bytes | None:
        """The record at `offset` while it is not yet in the file (without its newline), else None."""
        with self._lock:
            at = offset - self._written.size
            if at < 0:
                return None
            buffer: bytes | bytearray = self._in_transit
            if at >= len(buffer):
                at -= len(buffer)
                buffer = self._pending
            end = buffer.find(b"\n", at)
            return bytes(buffer[at:end]) if at < len(buffer) and end >= 0 else None

    def flush(self, fsync: bool = True) -> ResultsSummary:
        """Write every buffered record, and fsync when `fsync`; returns the summary of the file then.

        After flush(fsync=True) returns, the summary is on disk: state.toml may claim it.
        """
        with self._io_lock:
            self._write()
            self._auto_write = True
            if fsync and self._unsynced:
                try:
                    os.fsync(self._fd)
                    if self._sync_dir:
                        fsync_directory(self.path.parent)
                        self._sync_dir = False
                except OSError as e:
                    raise StoreError(
                        f"{self.path}: cannot save the results ({os_reason(e)}); the next save tries again."
                    ) from None
                self._unsynced = False
            return self._written

    def close(self) -> None:
        """Flush with fsync and close; when the flush fails the file stays open for another try."""
        if self._fd < 0:
            return
        self.flush()
        os.close(self._fd)
        self._fd = -1

    def abandon(self) -> int:
        """Close without writing what is buffered (after `close` failed for good); the records left unwritten.

        The file keeps only whole records: a next run reads it as usual and sends those requests again.
        """
        if self._fd < 0:
            return 0
        with self._io_lock, self._lock:
            lost = self._pending_counts[0] + self._in_transit_records
            self._pending, self._pending_counts = bytearray(), [0, 0, 0, 0, 0]
            os.close(self._fd)
            self._fd = -1
        return lost

    def _write(self) -> None:
        """Write the buffer to the file, all of it or nothing (called holding _io_lock)."""
        if self._broken is not None:
            raise StoreError(self._broken)
        with self._lock:
            if not self._pending:
                return
            # bytes, not the bytearray: a slice handed to os.write must not pin a buffer that grows
            data, counts = bytes(self._pending), self._pending_counts
            self._in_transit, self._in_transit_records = data, counts[0]
            self._pending, self._pending_counts = bytearray(), [0, 0, 0, 0, 0]
        try:
            with memoryview(data) as view:
                done = 0
                while done < len(data):
                    done += os.write(self._fd, view[done:])
        except OSError as e:
            self._take_back(data, counts, e)
        written = self._written
        summary = ResultsSummary(
            written.size + len(data),
            zlib.crc32(data, written.crc32),
            written.records + counts[0],
            written.prompt_tokens + counts[1],
            written.completion_tokens + counts[2],
            written.total_tokens + counts[3],
            written.attempts + counts[4],
        )
        with self._lock:
            self._written = summary
            self._in_transit, self._in_transit_records = b"", 0
        self._unsynced = True

    def _take_back(self, data: bytes, counts: list[int], error: OSError) -> None:
        """After a failed write: keep the records in memory and cut what reached the file; raises."""
        with self._lock:
            self._pending[:0] = data
            self._pending_counts = [a + b for a, b in zip(counts, self._pending_counts)]
            self._in_transit, self._in_transit_records = b"", 0
            kept = self._pending_counts[0]
        reason = os_reason(error)
        try:
            os.ftruncate(self._fd, self._written.size)
        except OSError as e:
            # whole records may be in the file now: writing them again would duplicate them
            self._broken = (
                f"{self.path}: a failed write ({reason}) could not be undone ({os_reason(e)}); "
                "stop this run and rerun it to recover."
            )
            raise StoreError(self._broken) from None
        raise StoreError(
            f"{self.path}: cannot write the results ({reason}); "
            f"{kept} records are kept in memory and the next save tries again."
        ) from None


# ----- recovering ------------------------------------------------------------------------------


@dataclass(slots=True)
class Recovery:
    """What results.jsonl holds: per input index, the status and byte offset of its last record."""

    path: Path
    summary: ResultsSummary = ResultsSummary()  # of the whole, valid records
    bytes_cut: int = 0  # of a torn last line (cut when repairing, ignored otherwise)
    trusted_bytes: int = 0  # read on the word of the summary given to recover(), without parsing
    status: bytearray = field(default_factory=bytearray)  # NO_RECORD, DONE or FAILED, by index
    offsets: array[int] = field(default_factory=lambda: array("q"))  # of each index's last record; -1: none

    @property
    def records(self) -> int:
        return self.summary.records

    @property
    def done(self) -> int:
        """Indexes whose last record is done."""
        return self.status.count(DONE)

    @property
    def failed(self) -> int:
        """Indexes whose last record failed."""
        return self.status.count(FAILED)

    def last_records(self) -> Iterator[tuple[int, str, int]]:
        """(index, "done" or "failed", byte offset) of each index's last record, by index."""
        status, offsets = self.status, self.offsets
        for index, code in enumerate(status):
            if code:
                yield index, STATUS_NAMES[code], offsets[index]


def recover(path: str | os.PathLike[str], summary: ResultsSummary | None = None, repair: bool = True) -> Recovery:
    """Read results.jsonl (a missing file holds nothing); cut a torn last line when `repair`.

    `summary` is the one an earlier save kept: when the file still starts with exactly those bytes
    (same size and CRC-32), the records there are not parsed again. Raises StoreError, with the
    line number, when a line other than the last is not a record.
    """
    path = Path(path)
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return Recovery(path)
    except OSError as e:
        raise StoreError(f"{path}: cannot read ({os_reason(e)}).") from None
    with file:
        file_size = os.fstat(file.fileno()).st_size
        scan = _Scan(path)
        if summary is None or not 0 < summary.size <= file_size or not scan.trusted(file, summary):
            scan = _Scan(path)
            file.seek(0)
        scan.parse(file, file_size)
    recovery = scan.result()
    if recovery.bytes_cut and repair:
        _cut(path, recovery.summary.size)
    return recovery


class _Scan:
    """The state of one pass over results.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.status = bytearray()
        self.offsets = array("q")
        self.size = 0  # bytes of whole, valid lines so far
        self.crc32 = 0
        self.records = 0
        self.sums = [0, 0, 0, 0]  # prompt, completion, total tokens, attempts
        self.bytes_cut = 0
        self.trusted_bytes = 0

    def trusted(self, file: BinaryIO, summary: ResultsSummary) -> bool:
        """Read the statuses of the first summary.size bytes without parsing; False if they changed."""
        try:
            for block, end, lines in _blocks(file, summary.size):
                found = _HEAD.findall(block, 0, end - 1)
                if len(found) != len(lines):  # some id is not an int or a plain string
                    # parsed for the statuses only: the summary has the sums of this part
                    self._advance(block, *self._parse_lines(lines, self.sums[:]))
                    continue
                indexes = list(map(int, [index for index, _ in found]))
                codes = b"".join([code for _, code in found]).translate(_HEAD_CODES)
                starts = list(accumulate(chain((self.size,), map(add, map(len, lines), repeat(1)))))
                self._grow(max(indexes))
                deque(map(self.status.__setitem__, indexes, codes), maxlen=0)
                deque(map(self.offsets.__setitem__, indexes, starts), maxlen=0)
                self._advance(block, len(lines), starts[-1])
        except StoreError:
            return False  # the full scan says where
        if self.size != summary.size or self.crc32 != summary.crc32:
            return False
        self.records = summary.records
        self.trusted_bytes = summary.size
        self.sums = [summary.prompt_tokens, summary.completion_tokens, summary.total_tokens, summary.attempts]
        return True

    def parse(self, file: BinaryIO, file_size: int) -> None:
        """Parse every record from the file's position to its end; a torn last line is left out."""
        for block, _, lines in _blocks(file, file_size - self.size):
            self._advance(block, *self._parse_lines(lines, self.sums, file_size))
        self.bytes_cut = file_size - self.size

    def _parse_lines(self, lines: list[bytes], sums: list[int], file_size: int = -1) -> tuple[int, int]:
        """Parse and note each line: (records, file offset after the last one).

        Stops before the file's very last line when it is not JSON: a crash during its write.
        """
        status, offsets = self.status, self.offsets
        offset = self.size
        for number, line in enumerate(lines):
            try:
                record = parse_record(line)
            except DamagedLine as e:
                if e.torn and offset + len(line) + 1 == file_size:
                    return number, offset
                self._damaged(number, str(e))
            index, code, usage = record["index"], _STATUS_CODES[record["status"]], record["usage"]
            if usage is not None:
                sums[0] += usage.get("prompt_tokens") or 0
                sums[1] += usage.get("completion_tokens") or 0
                sums[2] += usage.get("total_tokens") or 0
            sums[3] += len(record["attempts"])
            if index >= len(status):
                self._grow(index)
            status[index] = code
            offsets[index] = offset
            offset += len(line) + 1
        return len(lines), offset

    def _advance(self, block: bytes, records: int, end: int) -> None:
        """Account for the first `records` lines of `block`, which end at file offset `end`."""
        with memoryview(block) as view:
            self.crc32 = zlib.crc32(view[1 : 1 + end - self.size], self.crc32)
        self.records += records
        self.size = end

    def _grow(self, index: int) -> None:
        if index >= len(self.status):
            more = max(index + 1, 2 * len(self.status)) - len(self.status)
            self.status.extend(bytes(more))
            self.offsets.extend(array("q", [-1]) * more)

    def _damaged(self, number: int, reason: str) -> None:
        line_no = self.records + number + 1
        raise StoreError(
            f"{self.path}:{line_no}: damaged record ({reason}); the file was not changed. "
            f"`tokenflow repair {self.path.parent}` moves the damaged lines to {DAMAGED_FILE} "
            "(nothing is deleted) and their requests run again."
        )

    def result(self) -> Recovery:
        # the per-index arrays grow by doubling: drop the room left over
        top = len(self.status.rstrip(b"\0"))
        del self.status[top:]
        del self.offsets[top:]
        summary = ResultsSummary(self.size, self.crc32, self.records, *self.sums)
        return Recovery(self.path, summary, self.bytes_cut, self.trusted_bytes, self.status, self.offsets)


def _blocks(file: BinaryIO, limit: int) -> Iterator[tuple[bytes, int, list[bytes]]]:
    """The whole lines in the next `limit` bytes of `file`, a block at a time: (block, end, lines).

    block[1:end] are the lines, each with its newline; block[0] is a newline, so that _HEAD finds
    every line's start. Bytes after the last newline are never yielded.
    """
    rest = b"\n"
    while limit > 0:
        chunk = file.read(min(READ_BYTES, limit))
        if not chunk:
            return
        limit -= len(chunk)
        block = rest + chunk
        lines = block.split(b"\n")
        del lines[0]
        tail = lines.pop()
        if lines:
            end = len(block) - len(tail)
            rest = block[end - 1 :]
            yield block, end, lines
        else:
            rest = block


# a key of every attempt of a record; inside a JSON string its quotes would be escaped, so it never matches there
_ATTEMPT_KEY = b'"started_at":'


def retried_offsets(path: str | os.PathLike[str], end: int) -> set[int]:
    """The offsets of the records in the first `end` bytes of results.jsonl that have two attempts or more."""
    found: set[int] = set()
    offset = 0
    with open(path, "rb") as file:
        for _block, _end, lines in _blocks(file, end):
            for line in lines:
                if line.count(_ATTEMPT_KEY) >= 2:
                    found.add(offset)
                offset += len(line) + 1
    return found


class DamagedLine(ValueError):
    """A line of results.jsonl that is not a record; the message says why, `torn` that it is not even JSON."""

    def __init__(self, reason: str, torn: bool) -> None:
        super().__init__(reason)
        self.torn = torn


def parse_record(line: bytes) -> dict[str, Any]:
    """The record on one line (without its newline); DamagedLine when it is not one."""
    try:
        record: dict[str, Any] = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise DamagedLine(f"invalid JSON at column {e.colno}: {e.msg}", torn=True) from None
    try:
        index, usage = record["index"], record["usage"]
        if type(index) is not int or index < 0 or record["status"] not in _STATUS_CODES:
            raise TypeError
        if usage is not None:
            usage.get  # noqa: B018 - an AttributeError says it is not an object
        len(record["attempts"])
    except (KeyError, TypeError, AttributeError):
        raise DamagedLine(_not_a_record(record), torn=False) from None
    return record


def _not_a_record(value: object) -> str:
    if type(value) is not dict:
        return "not a JSON object"
    index = value.get("index")
    if type(index) is not int or index < 0:
        return '"index" is not a whole number'
    if value.get("status") not in _STATUS_CODES:
        return '"status" is neither "done" nor "failed"'
    return '"usage" or "attempts" is not what a record holds'


def _cut(path: Path, size: int) -> None:
    try:
        with open(path, "r+b") as file:
            file.truncate(size)
            os.fsync(file.fileno())
    except OSError as e:
        raise StoreError(f"{path}: cannot cut the torn last line ({os_reason(e)}).") from None

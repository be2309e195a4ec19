"""A search of every request of a run for a piece of text: its id, its params, its answer.

The search runs on the run's loop a slice at a time (see slices.py), over what the run had when it
began: first the last records of the requests finished then (read in order from results.jsonl;
a line is parsed only if its raw bytes hold the text), then the requests the engine holds, then the
rest of the input, read lazily and matched by id and params. A request that finishes during the
search is matched by its params. Matches are one byte per request, so a million fit in a megabyte.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import compress
from pathlib import Path
from typing import Any

import orjson

from ..engine import TokenFlowRequest
from ..job.problems import JobError
from ..store.record_reader import record_lines
from .contract import SearchStatus
from .request_index import RequestTable

# the input's requests as (index, id, params), leaving out those `skip(index)` says
Queued = Callable[[Callable[[int], bool]], Iterable[tuple[int, Any, Any]]]
_MATCH = b"\x01"
# characters JSON writes escaped: a query with one is not looked for in a line's raw bytes
_ESCAPED = frozenset('"\\') | frozenset(chr(c) for c in range(32))


class RequestSearch:
    """One search; `work` is its generator of slices (see slices.step), `flags[index]` is 1 for a match."""

    def __init__(
        self,
        query: str,
        table: RequestTable,
        held: Callable[[], Iterable[TokenFlowRequest]],
        results: Path,
        end: int,
        queued: Queued,
    ) -> None:
        self.query = query
        self.total = table.count
        self.flags = bytearray(table.count)
        self.matches = 0
        self.scanned = 0
        self.done = False
        self._needle = query.lower()
        self._table = table
        self._held = held
        self._results, self._end = results, end
        self._queued = queued
        self._finished = table.finished_flags()  # as at the start: those are searched in their records
        self.work: Iterator[None] = self._work()

    def status(self) -> SearchStatus:
        return SearchStatus(self.query, self.scanned, self.total, self.matches, self.done)

    def _work(self) -> Iterator[None]:
        if self._needle:
            yield from self._finished_records()
            yield from self._held_requests()
            yield from self._input()
        self.scanned = self.total
        self.done = True

    def _mark(self, index: int) -> None:
        if not self.flags[index]:
            self.flags[index] = 1
            self.matches += 1

    def _finished_records(self) -> Iterator[None]:
        finished, offsets, needle = self._finished, self._table.offsets, self._needle
        finished_count = len(finished) - finished.count(0)
        raw = None if _ESCAPED.intersection(needle) else needle.encode()
        seen = 0
        for offset, line in record_lines(self._results, self._end):
            seen += 1
            self.scanned = min(seen, finished_count)
            if raw is not None:
                hay = line.lower() if line.isascii() else line.decode("utf-8", "replace").lower().encode()
                if raw not in hay:
                    yield
                    continue
            try:
                record = orjson.loads(line)
                index = record["index"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                yield
                continue
            # only a request's last record, and only if it was finished when the search began
            if type(index) is int and 0 <= index < self.total and finished[index] and offsets[index] == offset:
                if record_matches(record, needle):
                    self._mark(index)
            yield
        self.scanned = finished_count

    def _held_requests(self) -> Iterator[None]:
        needle = self._needle
        for request in list(self._held()):
            index = request.id
            elements = request.request_trajectory.trajectory
            if 0 <= index < self.total and elements and request_matches(request, needle):
                self._mark(index)
            yield

    def _input(self) -> Iterator[None]:
        finished, offsets, end, needle = self._finished, self._table.offsets, self._end, self._needle

        def searched(index: int) -> bool:
            # finished at the start with its last record in the part of the file read above
            return bool(finished[index]) and 0 <= offsets[index] < end

        try:
            for index, ident, params in self._queued(searched):
                self.scanned += 1
                if 0 <= index < self.total and (needle in str(ident).lower() or contains(params, needle)):
                    self._mark(index)
                yield
        except JobError:
            return  # the input changed under the run: what was read is searched


def record_matches(record: dict[str, Any], needle: str) -> bool:
    """Whether a record's id, params (of any attempt), answer or error holds `needle` (lower case)."""
    if needle in str(record.get("id")).lower():
        return True
    if contains(record.get("result"), needle) or contains(record.get("error"), needle):
        return True
    attempts = record.get("attempts")
    return isinstance(attempts, list) and any(
        isinstance(a, dict) and contains(a.get("params"), needle) for a in attempts
    )


def request_matches(request: TokenFlowRequest, needle: str) -> bool:
    """As `record_matches`, for a request the engine holds: its params, and the results of its attempts so far."""
    elements = request.request_trajectory.trajectory
    first = elements[0].request_params
    if needle in str(first.get("id", request.id) if isinstance(first, dict) else request.id).lower():
        return True
    return any(contains(e.request_params, needle) or contains(e.result, needle) for e in elements)


def contains(value: Any, needle: str) -> bool:
    """Whether a string in `value` (itself, or nested in dicts' values and lists) holds `needle` (lower case)."""
    if isinstance(value, str):
        return needle in value.lower()
    if isinstance(value, dict):
        return any(contains(v, needle) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains(v, needle) for v in value)
    text = getattr(value, "exception_str", None)  # a handler's exception, as the engine keeps it
    return isinstance(text, str) and needle in text.lower()


def next_match(flags: bytearray, view: Sequence[int] | None, position: int, direction: int) -> int | None:
    """The position in `view` (None: every request in input order) of the next match after `position`
    (direction 1) or before it (-1), wrapping around; None with no match in the view."""
    if view is None:
        if direction >= 0:
            found = flags.find(_MATCH, position + 1)
            return found if found >= 0 else _or_none(flags.find(_MATCH))
        found = flags.rfind(_MATCH, 0, max(0, position))
        return found if found >= 0 else _or_none(flags.rfind(_MATCH))
    positions = list(compress(range(len(view)), map(flags.__getitem__, view)))
    if not positions:
        return None
    if direction >= 0:
        at = bisect_right(positions, position)
        return positions[at] if at < len(positions) else positions[0]
    at = bisect_left(positions, position)
    return positions[at - 1] if at > 0 else positions[-1]


def _or_none(found: int) -> int | None:
    return found if found >= 0 else None

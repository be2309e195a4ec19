"""The finished rows in the order of a sort key, largest first, built a slice at a time.

Only finished requests are sorted: the others have no final latency, attempts or tokens yet. The
keys live in the request table's compact arrays; rows that an earlier run finished have theirs on
disk only, so the first build reads results.jsonl once to learn them. A build packs each row's key
and index into one int, sorts runs of `_RUN` of them, then merges the runs, all in slices on the
loop (a sort of a million in one call would hold it for a second). While the run goes on, an order
is rebuilt in the background once rows changed and `_REBUILD_S` (or ten times the last build's
time, if longer) have passed; the last order stays on view meanwhile.
"""

from __future__ import annotations

import asyncio
import heapq
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, islice
from pathlib import Path

import orjson

from ..store.record_reader import record_lines
from .contract import SORT_KEYS, SortStatus
from .request_index import RequestTable
from .slices import start_in_slices

_CHUNK = 2_048  # rows handled between two looks at the clock
_RUN = 16_384  # rows sorted in one call (a few milliseconds)
_INDEX_BITS = 32
_INDEX_MASK = (1 << _INDEX_BITS) - 1
# a key and an index packed fit a signed 64-bit int; larger keys (latency past 35 minutes) tie at the top
_MAX_KEY = (1 << 31) - 1
_REBUILD_S = 2.0
_REBUILD_FACTOR = 10  # a rebuild at most every ten build times: at most a tenth of the loop on sorting


class SortBuild:
    """One build of the order by `key`; `work` is its generator of slices, `order` is set once done."""

    def __init__(self, key: str, table: RequestTable, results: Path, end: int) -> None:
        self.key = key
        self.order: array[int] | None = None
        self.done = 0
        self._table, self._results, self._end = table, results, end
        learn = table.keys_missing
        # steps: the bytes to read (when learning), then the rows to pack, to sort and to merge
        self.total = (end if learn else 0) + 3 * table.count
        self.work: Iterator[None] = self._work(learn)

    def _work(self, learn: bool) -> Iterator[None]:
        table = self._table
        if learn:
            yield from self._learn()
            table.keys_missing = False
        self.done = self._end if learn else 0
        finished = table.finished_flags()
        value, key, packs = table.sort_value, self.key, array("q")
        scale = 1000 if key == "latency" else 1  # milliseconds to microseconds: ints sort fastest
        for start in range(0, table.count, _CHUNK):
            packs.extend(
                (-min(int(value(key, i) * scale), _MAX_KEY) << _INDEX_BITS) | i
                for i in compress(range(start, min(start + _CHUNK, table.count)), finished[start : start + _CHUNK])
            )
            self.done += _CHUNK
            yield
        # arrays, not lists: 8 bytes a row rather than 40, and nothing for the garbage collector to walk
        runs = []
        for start in range(0, len(packs), _RUN):
            runs.append(array("q", sorted(packs[start : start + _RUN])))
            self.done += _RUN
            yield
        del packs
        order: array[int] = array("q")
        merged = heapq.merge(*runs)
        while chunk := list(islice(merged, _CHUNK)):
            order.extend(p & _INDEX_MASK for p in chunk)
            self.done += _CHUNK
            yield
        self.done = self.total
        self.order = order

    def _learn(self) -> Iterator[None]:
        """Read the keys of rows finished by earlier runs from their last records."""
        table, count = self._table, self._table.count
        offsets = table.offsets
        for offset, line in record_lines(self._results, self._end):
            self.done = offset
            try:
                record = orjson.loads(line)
                index = record["index"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if type(index) is int and 0 <= index < count and offsets[index] == offset and table.is_finished(index):
                if not table.keys_known(index):
                    table.learn(index, record)
            yield


@dataclass(slots=True)
class _Order:
    order: array[int]
    changes: int  # the table's changes when the build began
    built_at: float
    took_s: float


class RowOrders:
    """The sorted orders of a run's rows, one per key, each built when first asked and rebuilt when stale.

    `results()` gives results.jsonl and the bytes of it that hold whole records now; `clock` is monotonic.
    """

    def __init__(self, table: RequestTable, results: Callable[[], tuple[Path, int]], clock: Callable[[], float]):
        self._table = table
        self._results = results
        self._clock = clock
        self._ready: dict[str, _Order] = {}
        self._building: dict[str, SortBuild] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._views: dict[tuple[str, str], tuple[array[int], list[int]]] = {}

    def order(self, key: str) -> array[int] | None:
        """The latest order by `key` (None before the first build is done); starts a build when due."""
        if key not in SORT_KEYS or key == "input":
            raise ValueError(f"unknown sort key {key!r}")
        ready = self._ready.get(key)
        if key not in self._building and (ready is None or self._stale(ready)):
            self._start(key)
            ready = self._ready.get(key)
        return ready.order if ready is not None else None

    def view(self, key: str, row_filter: str, members: Callable[[], Sequence[int]]) -> Sequence[int] | None:
        """The filter's finished rows in the order by `key`; `members()` gives the filter's rows (any order).

        Worked out once per order built, not per draw: rows that changed since show as they are now.
        """
        order = self.order(key)
        if order is None or row_filter == "all":
            return order
        cached = self._views.get((key, row_filter))
        if cached is not None and cached[0] is order:
            return cached[1]
        flags = bytearray(self._table.count)
        for index in members():
            flags[index] = 1
        rows = list(compress(order, map(flags.__getitem__, order)))
        self._views[(key, row_filter)] = (order, rows)
        return rows

    def status(self, key: str) -> SortStatus:
        if key == "input":
            return SortStatus()
        build = self._building.get(key)
        return SortStatus(
            key,
            key in self._ready,
            build is not None,
            build.done if build is not None else 0,
            build.total if build is not None else 0,
        )

    def _stale(self, ready: _Order) -> bool:
        if ready.changes == self._table.changes:
            return False
        return self._clock() - ready.built_at >= max(_REBUILD_S, _REBUILD_FACTOR * ready.took_s)

    def _start(self, key: str) -> None:
        path, end = self._results()
        build = self._building[key] = SortBuild(key, self._table, path, end)
        changes, began = self._table.changes, self._clock()

        def done() -> None:
            del self._building[key]
            if build.order is not None:
                now = self._clock()
                self._ready[key] = _Order(build.order, changes, now, now - began)

        task = start_in_slices(build.work, done)
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

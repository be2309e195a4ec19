"""The requests of a run as the dashboard reads them: rows by filter and sort, one request's attempts,
failed groups, and a search of them all.

Finished requests come from the request table (details read back from results.jsonl); unfinished
ones from `HeldRequests`, an index by id that the runner's hooks keep, so that a draw does not gather
every request the engine holds; which of them are in flight or waiting is the engine's ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..engine import TokenFlowRequest, TokenFlowRequestTrajectory
from ..store.record_reader import RecordReader
from ..store.records import build_record
from .contract import SORT_KEYS, RequestRow, SearchStatus, SortStatus
from .request_index import RequestTable, unfinished_row
from .row_order import RowOrders
from .search import Queued, RequestSearch, next_match
from .slices import start_in_slices

# the engine's requests in flight now, and those whose next attempt is held back at the gate
Ledger = Callable[[], tuple[list[TokenFlowRequest], list[TokenFlowRequest]]]


class HeldRequests:
    """The requests the engine holds (taken from the input, not finished), by index, for drawing rows.

    Only an index: whether one is in flight or held back at the gate is the engine's ledger to say.
    """

    def __init__(self) -> None:
        self.requests: dict[int, TokenFlowRequest] = {}

    def hold(self, request: TokenFlowRequest) -> None:
        self.requests[request.id] = request

    def queued(self, requests: Iterable[TokenFlowRequest]) -> None:
        """Requests queued again (retry): held from now on, before their first attempt."""
        for request in requests:
            self.requests[request.id] = request

    def finished(self, index: int) -> None:
        self.requests.pop(index, None)


@dataclass(frozen=True, slots=True)
class Sources:
    """Where searching and sorting read: results.jsonl with the bytes of it holding whole records now,
    the input's requests (read lazily), and a monotonic clock."""

    results: Callable[[], tuple[Path, int]]
    queued: Queued
    clock: Callable[[], float]


class RunRows:
    """`reader` reads finished requests back from results.jsonl; None before the run is opened."""

    def __init__(
        self,
        table: RequestTable,
        held: HeldRequests,
        ledger: Ledger,
        reader: RecordReader | None,
        builtin: bool,
        sent_body: Callable[[Any, str | None], dict[str, Any]] | None = None,
        sources: Sources | None = None,
    ) -> None:
        self._table = table
        self._held = held
        self._ledger = ledger
        self._reader = reader
        self._builtin = builtin
        # the HTTP body an attempt's params became at its endpoint ([[endpoints]]: named in the attempt)
        self._sent_body = sent_body
        self._sources = sources  # None: nothing to search or sort yet (before the run is opened)
        self._orders = RowOrders(table, sources.results, sources.clock) if sources is not None else None
        self._search: RequestSearch | None = None
        self._search_task: asyncio.Task[None] | None = None

    def row_count(self, row_filter: str = "all", sort: str = "input") -> int:
        return len(self._view(row_filter, sort))

    def rows(self, row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        indexes = self._view(row_filter, sort)[start:stop]
        table, held = self._table, self._held.requests
        in_flight, held_back = self._ledger()
        sent = {request.id for request in in_flight}
        gated = {request.id for request in held_back}
        rows = []
        for index in indexes:
            if table.is_finished(index):
                rows.append(table.finished_row(index, self.read_record))
            else:
                state = "in_flight" if index in sent else ("waiting" if index in gated else None)
                rows.append(unfinished_row(index, held.get(index), state))
        if self._search is not None and self._search.matches:
            flags = self._search.flags
            rows = [replace(row, matched=True) if flags[row.index] else row for row in rows]
        return rows

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        """The attempts as in results.jsonl; with the built-in handler each also has the `body` it sent."""
        if self._table.is_finished(index):
            record = self.read_record(self._table.offsets[index]) or {}
            return self._with_body(list(record.get("attempts") or []))
        request = self._held.requests.get(index)
        if request is None:
            return []
        made = [e for e in request.request_trajectory.trajectory if e.action is not None]
        if not made:
            return []
        record = build_record(TokenFlowRequest(request.id, TokenFlowRequestTrajectory(made)), self._builtin)
        return self._with_body(record["attempts"])

    def _with_body(self, attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._sent_body is None:
            return attempts
        shown = []
        for attempt in attempts:
            try:
                shown.append({**attempt, "body": self._sent_body(attempt.get("params") or {}, attempt.get("endpoint"))})
            except (ValueError, AttributeError, TypeError):
                shown.append(attempt)  # a line the handler could not send either: its params say why
        return shown

    def read_record(self, offset: int) -> dict[str, Any] | None:
        """The record at `offset` of results.jsonl (None before the run is opened and once it is closed)."""
        return self._reader.read(offset) if self._reader is not None else None

    def failed_groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for index, kind in self._table.failed.items():
            groups.setdefault(kind, []).append(index)
        return groups

    def sort_status(self, sort: str) -> SortStatus:
        if sort not in SORT_KEYS:
            raise ValueError(f"unknown sort key {sort!r}")
        return self._orders.status(sort) if self._orders is not None else SortStatus(sort, sort == "input")

    def search(self, query: str) -> SearchStatus:
        if self._search_task is not None:
            self._search_task.cancel()
        self._search = self._search_task = None
        if not query or self._sources is None:
            return SearchStatus(query)
        path, end = self._sources.results()
        search = self._search = RequestSearch(
            query, self._table, lambda: self._held.requests.values(), path, end, self._sources.queued
        )
        self._search_task = start_in_slices(search.work, lambda: None)
        return search.status()

    def search_status(self) -> SearchStatus:
        return self._search.status() if self._search is not None else SearchStatus()

    def find(self, position: int, direction: int, row_filter: str = "all", sort: str = "input") -> int | None:
        if self._search is None:
            return None
        view = self._view(row_filter, sort)
        return next_match(self._search.flags, None if isinstance(view, range) else view, position, direction)

    def _view(self, row_filter: str, sort: str) -> Sequence[int]:
        """The filter's rows in the order asked; in input order while that order is not built yet."""
        if sort != "input" and row_filter != "in_flight" and self._orders is not None:
            if sort not in SORT_KEYS:
                raise ValueError(f"unknown sort key {sort!r}")
            view = self._orders.view(sort, row_filter, lambda: self._indexes(row_filter))
            if view is not None:
                return view
        return self._indexes(row_filter)

    def _indexes(self, row_filter: str) -> Sequence[int]:
        if row_filter == "all":
            return range(self._table.count)
        if row_filter == "in_flight":
            return sorted(request.id for request in self._ledger()[0])
        if row_filter == "retried":
            # two attempts or more: a request queued again (by retry) and not yet sent is not one
            held = [i for i, r in self._held.requests.items() if r.request_trajectory.length() >= 2]
            return sorted(self._table.retried_rows().union(held))
        if row_filter == "failed":
            return list(self._table.failed)
        raise ValueError(f"unknown row filter {row_filter!r}")

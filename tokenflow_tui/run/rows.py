"""The requests of a run as the dashboard reads them: rows by filter, one request's attempts, failed groups.

Finished requests come from the request table (details read back from results.jsonl); unfinished
ones from `HeldRequests`, an index by id that the runner's hooks keep, so that a draw does not gather
every request the engine holds; which of them are in flight or waiting is the engine's ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..engine import TokenFlowRequest, TokenFlowRequestTrajectory
from ..store.record_reader import RecordReader
from ..store.records import build_record
from .contract import RequestRow
from .request_index import RequestTable, unfinished_row

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
    ) -> None:
        self._table = table
        self._held = held
        self._ledger = ledger
        self._reader = reader
        self._builtin = builtin
        # the HTTP body an attempt's params became at its endpoint ([[endpoints]]: named in the attempt)
        self._sent_body = sent_body

    def row_count(self, row_filter: str = "all") -> int:
        return len(self._indexes(row_filter))

    def rows(self, row_filter: str, start: int, stop: int) -> list[RequestRow]:
        indexes = self._indexes(row_filter)[start:stop]
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

    def _indexes(self, row_filter: str) -> Sequence[int]:
        if row_filter == "all":
            return range(self._table.count)
        if row_filter == "in_flight":
            return sorted(request.id for request in self._ledger()[0])
        if row_filter == "retried":
            # two attempts or more: a request queued again (by retry) and not yet sent is not one
            held = [i for i, r in self._held.requests.items() if len(r.request_trajectory.trajectory) >= 2]
            return sorted(self._table.retried_rows().union(held))
        if row_filter == "failed":
            return list(self._table.failed)
        raise ValueError(f"unknown row filter {row_filter!r}")

"""The requests of a run as the dashboard reads them: rows by filter, one request's attempts, failed groups.

Finished requests come from the request table (details read back from results.jsonl); unfinished
ones are asked of the engine when drawn.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ..engine import TokenFlowRequest, TokenFlowRequestTrajectory, TokenFlowTask
from .records import build_record
from .request_table import RequestTable, unfinished_row
from .view import RequestRow

ReadRecord = Callable[[int], dict[str, Any] | None]


class RunRows:
    """`task` gives the engine's task once the run has started (None before)."""

    def __init__(self, table: RequestTable, task: Callable[[], TokenFlowTask | None], read_record: ReadRecord,
                 builtin: bool) -> None:
        self._table = table
        self._task = task
        self._read_record = read_record
        self._builtin = builtin

    def row_count(self, row_filter: str = "all") -> int:
        return len(self._indexes(row_filter))

    def rows(self, row_filter: str, start: int, stop: int) -> list[RequestRow]:
        indexes = self._indexes(row_filter)[start:stop]
        held = self._held_requests()
        rows = []
        for index in indexes:
            if self._table.is_finished(index):
                rows.append(self._table.finished_row(index, self._read_record))
            else:
                request, in_flight = held.get(index, (None, False))
                rows.append(unfinished_row(index, request, in_flight))
        return rows

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        if self._table.is_finished(index):
            record = self._read_record(self._table.offsets[index]) or {}
            return list(record.get("attempts") or [])
        request, _ = self._held_requests().get(index, (None, False))
        if request is None:
            return []
        made = [e for e in request.request_trajectory.trajectory if e.action is not None]
        if not made:
            return []
        return build_record(TokenFlowRequest(request.id, TokenFlowRequestTrajectory(made)), self._builtin)["attempts"]

    def failed_groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for index, kind in self._table.failed.items():
            groups.setdefault(kind, []).append(index)
        return groups

    def _indexes(self, row_filter: str) -> Sequence[int]:
        task = self._task()
        if row_filter == "all":
            return range(self._table.count)
        if row_filter == "in_flight":
            return sorted(r.id for r in task.in_flight()) if task is not None else []
        if row_filter == "retried":
            waiting = [r.id for r in task.waiting()] if task is not None else []
            return sorted(set(self._table.retried).union(waiting))
        if row_filter == "failed":
            return list(self._table.failed)
        raise ValueError(f"unknown row filter {row_filter!r}")

    def _held_requests(self) -> dict[int, tuple[TokenFlowRequest, bool]]:
        task = self._task()
        if task is None:
            return {}
        held = {r.id: (r, False) for r in task.waiting()}
        held.update((r.id, (r, True)) for r in task.in_flight())
        return held

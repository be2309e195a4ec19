"""Compact per-request rows for the dashboard: a few bytes per input request, so a million fit."""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..engine import TokenFlowRequest
from ..store.records import printable, record_error_kind, request_id
from ..store.results_file import DONE, FAILED, NO_RECORD
from ..traffic.storm import failure_label
from .contract import RequestRow

# a row's state as kept here; in flight, waiting and retrying are asked of the engine when drawn
STATE_NAMES = {NO_RECORD: "queued", DONE: "done", FAILED: "failed"}
_PREVIEW_CHARS = 120
_RECENT_PREVIEWS = 20_000  # finished rows whose preview is kept in memory; older ones are read from disk
# rows read back from disk, kept: the dashboard draws the same ~50 rows several times a second, and
# a finished row only changes when its request is queued again and finishes again
_READ_ROWS = 1_024
_MAX_TOKENS = 2**32 - 1


class RequestTable:
    """Finished rows live here; unfinished ones are asked of the engine when drawn."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._state = bytearray(count)
        self._attempts = bytearray(count)
        # statuses ("200", "429", "timeout", …) are few: each row keeps a small code for one
        self._status_names: list[str] = [""]
        self._status_codes: dict[str, int] = {"": 0}
        self._status_code = array("h", bytes(2 * count))
        self._latency_ms = array("f", bytes(4 * count))
        self._tokens = array("I", bytes(4 * count))  # total tokens of the last record, for sorting
        self.offsets = array("q", [-1]) * count
        self.failed: dict[int, str] = {}  # index → error kind of its last attempt, in failing order
        self.retried: set[int] = set()  # finished here with two attempts or more in their last record
        self._earlier_retried: Callable[[], set[int]] | None = None  # see restore
        self._previews: OrderedDict[int, tuple[Any, str]] = OrderedDict()
        self._read_rows: OrderedDict[int, RequestRow] = OrderedDict()
        self.keys_missing = False  # rows restored from disk whose sort keys are not learnt yet
        self.changes = 0  # counts every row that finished or was queued again: a sorted order is stale after one

    def note_finished(
        self,
        index: int,
        user_id: Any,
        failed_kind: str | None,
        attempts: int,
        status: str,
        latency_ms: float | None,
        preview: str,
        offset: int,
        tokens: int = 0,
    ) -> None:
        self.changes += 1
        self._state[index] = FAILED if failed_kind is not None else DONE
        self._attempts[index] = min(attempts, 255)
        self._tokens[index] = min(tokens, _MAX_TOKENS)
        code = self._status_codes.get(status)
        if code is None:
            code = self._status_codes[status] = len(self._status_names)
            self._status_names.append(status)
        self._status_code[index] = code
        self._latency_ms[index] = latency_ms if latency_ms is not None else -1.0
        self.offsets[index] = offset
        if failed_kind is not None:
            self.failed[index] = failed_kind
        else:
            self.failed.pop(index, None)
        if attempts > 1:
            self.retried.add(index)
        else:
            self.retried.discard(index)
        self._read_rows.pop(index, None)
        self._previews[index] = (user_id, preview[:_PREVIEW_CHARS])
        if len(self._previews) > _RECENT_PREVIEWS:
            self._previews.popitem(last=False)

    def restore(
        self, status: bytearray, offsets: array[int], retried_offsets: Callable[[], set[int]] | None = None
    ) -> None:
        """Take the rows finished by earlier runs, as recovery found them (details are read when drawn).

        `retried_offsets()` gives the offsets of their records with two attempts or more; it reads the
        whole file, so it is asked only when the retried rows are first wanted.
        """
        self._state[: len(status)] = status
        self.offsets[: len(offsets)] = offsets
        self.keys_missing = status.count(0) != len(status)
        self._earlier_retried = retried_offsets

    def retried_rows(self) -> set[int]:
        """Finished rows whose last record has two attempts or more, earlier runs' included."""
        if self._earlier_retried is not None:
            offsets, self._earlier_retried = self._earlier_retried(), None
            state = self._state
            self.retried.update(
                index for index, offset in enumerate(self.offsets) if offset in offsets and state[index] != NO_RECORD
            )
        return self.retried

    def requeue(self, index: int) -> str | None:
        """Mark a failed request as queued again; its last error kind, or None if it had not failed."""
        if self._state[index] != FAILED:
            return None
        self.changes += 1
        self._state[index] = NO_RECORD
        self._read_rows.pop(index, None)
        self.retried.discard(index)
        return self.failed.pop(index, "unknown")

    def failed_indexes(self) -> list[int]:
        found, state, at = [], self._state, -1
        marker = bytes([FAILED])
        while (at := state.find(marker, at + 1)) >= 0:
            found.append(at)
        return found

    def is_finished(self, index: int) -> bool:
        return self._state[index] in (DONE, FAILED)

    def finished_flags(self) -> bytes:
        """One byte per request, non-zero where it is finished (a copy: the table goes on changing)."""
        return bytes(self._state)

    def keys_known(self, index: int) -> bool:
        """Whether the row's attempts, latency and tokens are here (a row restored from disk has them after `learn`)."""
        return self._attempts[index] != 0

    def learn(self, index: int, record: dict[str, Any]) -> None:
        """Take the sort keys of a finished row from its record (read back from disk)."""
        attempts = record.get("attempts") or []
        latency = (attempts[-1] if attempts else {}).get("latency_ms")
        self._attempts[index] = max(1, min(len(attempts), 255))
        self._latency_ms[index] = latency if latency is not None else -1.0
        self._tokens[index] = min(record_tokens(record), _MAX_TOKENS)

    def sort_value(self, key: str, index: int) -> float:
        """The row's value for a sort key: "latency" (ms of its last attempt, -1 unknown), "attempts", "tokens"."""
        if key == "latency":
            return self._latency_ms[index]
        if key == "attempts":
            return self._attempts[index]
        return self._tokens[index]

    def finished_row(self, index: int, read_record: Callable[[int], dict[str, Any] | None]) -> RequestRow:
        cached = self._previews.get(index)
        if cached is None or not self._attempts[index]:
            return self._read_row(index, read_record)
        latency = self._latency_ms[index]
        return RequestRow(
            index,
            cached[0],
            STATE_NAMES[self._state[index]],
            self._attempts[index],
            self._status_names[self._status_code[index]],
            latency if latency >= 0 else None,
            cached[1],
        )

    def _read_row(self, index: int, read_record: Callable[[int], dict[str, Any] | None]) -> RequestRow:
        """A finished row whose details are on disk only (finished long ago, or by an earlier run)."""
        row = self._read_rows.get(index)
        if row is not None:
            self._read_rows.move_to_end(index)
            return row
        read = read_record(self.offsets[index])
        record = read or {}
        attempts = record.get("attempts") or []
        last = attempts[-1] if attempts else {}
        row = RequestRow(
            index,
            record.get("id", index),
            STATE_NAMES[self._state[index]],
            len(attempts),
            attempt_status(last),
            last.get("latency_ms"),
            record_preview(record),
        )
        if read is not None:  # None: the run is closed, or the line is not a record; nothing to keep
            self._read_rows[index] = row
            if len(self._read_rows) > _READ_ROWS:
                self._read_rows.popitem(last=False)
        return row


def unfinished_row(index: int, request: TokenFlowRequest | None, state: str | None) -> RequestRow:
    """A row for a request the engine holds (or, with no request, one still waiting in the input).

    `state` is the engine's ledger's: "in_flight" (its attempt is sent), "waiting" (held back at the
    gate: what for is in `waiting_for`), or None (queued, or retrying after an attempt).
    """
    if request is None:
        return RequestRow(index, index, "queued", 0, "", None, "")
    elements = request.request_trajectory.trajectory
    user_id = request_id(elements[0].request_params, index)
    done = [e for e in elements if e.action is not None]
    in_flight = state == "in_flight"
    waiting_for = (request.waiting_for or "traffic control") if state == "waiting" else ""
    if state is None:
        state = "retrying" if done else "queued"
    if not done:
        return RequestRow(index, user_id, state, len(elements) - (0 if in_flight else 1), "", None, "", waiting_for)
    last = done[-1]
    result = last.result
    error = result.get("error") if isinstance(result, dict) else None
    status = attempt_status(result)
    preview = error.get("message", "") if isinstance(error, dict) else _text_preview(result)
    latency = last.latency_s * 1000 if last.latency_s is not None else None
    attempts = len(done) + (1 if in_flight else 0)
    return RequestRow(index, user_id, state, attempts, status, latency, preview[:_PREVIEW_CHARS], waiting_for)


def attempt_status(attempt: Any) -> str:
    """What the status column shows for an attempt: as stored in results.jsonl, or its handler's result."""
    if not isinstance(attempt, dict):
        return "ok"
    error = attempt.get("error")
    if isinstance(error, dict):
        code = error.get("status_code")
        return str(code) if code else str(error.get("kind", "error"))
    code = attempt.get("status_code")
    return str(code) if code else "ok"


def record_failure_label(record: dict[str, Any] | None) -> str:
    """The failure of a failed record as the storm detector names it ("HTTP 400", or its kind)."""
    error = (record or {}).get("error")
    status = error.get("status_code") if isinstance(error, dict) else None
    return failure_label(record_error_kind(record), status)


def record_tokens(record: dict[str, Any]) -> int:
    """The total tokens of a record's usage (0 without usage)."""
    usage = record.get("usage")
    if not isinstance(usage, dict):
        return 0
    total = usage.get("total_tokens")
    if not isinstance(total, int):
        total = sum(v for k in ("prompt_tokens", "completion_tokens") if isinstance(v := usage.get(k), int))
    return max(0, total)


def record_preview(record: dict[str, Any]) -> str:
    error = record.get("error")
    if record.get("status") == "failed" and isinstance(error, dict):
        return str(error.get("message", ""))[:_PREVIEW_CHARS]
    return _text_preview(record.get("result"))[:_PREVIEW_CHARS]


def _text_preview(value: Any) -> str:
    if isinstance(value, dict) and "text" in value:
        value = value["text"]
    text = value if isinstance(value, str) else ("" if value is None else printable(value, repr))
    return " ".join(text.split())

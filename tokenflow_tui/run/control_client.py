"""`RunControl` over a run's control socket: the dashboard drives a job in another process as if it hosted it.

Reads (snapshot, rows…) are blocking round trips on one connection: the dashboard calls them synchronously,
and a Unix socket answers in well under a millisecond when the job's loop is not saturated. Controls that
wait (pause, save, shutdown) and `run` (which waits for the job's end) each take a connection of their own
on the event loop, so that the keyboard stays responsive meanwhile.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .contract import RequestRow, RunSnapshot, SaveReport, SearchStatus, SortStatus
from .control_socket import read_info
from .control_wire import MAX_LINE, RETURNS, WireError, build, decode, encode

READ_TIMEOUT_S = 10.0  # a job that answers no read in this long is stuck (or suspended)
# what a lost job's reads answer once it is gone, when they were never asked before
_EMPTY: dict[str, Any] = {
    "row_count": 0,
    "rows": [],
    "trajectory": [],
    "failed_groups": {},
    "sort_status": SortStatus(),
    "search": SearchStatus(),
    "search_status": SearchStatus(),
}


class ControlError(Exception):
    """The job could not be asked, or refused; the message is a sentence."""


class NotRunning(ControlError):
    """No job listens on the output's control socket."""


class ReadOnly(ControlError):
    """A watching view asked to steer."""


def find_socket(output_dir: Path) -> Path:
    """The socket of the run in `output_dir`; NotRunning when no run listens there."""
    info = read_info(output_dir)
    if info is None or not isinstance(info.get("socket"), str):
        raise NotRunning(f"{output_dir}: no tokenflow run has listened here (no control.json)")
    path = Path(info["socket"])
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(READ_TIMEOUT_S)
        probe.connect(os.fspath(path))
    except OSError as error:
        if error.errno in (errno.ECONNREFUSED, errno.ENOENT):
            raise NotRunning(f"{output_dir}: the job is not running (nothing listens on {path})") from None
        raise ControlError(f"{path}: cannot connect ({error.strerror})") from None
    finally:
        probe.close()
    return path


class RemoteControl:
    """The job in `output_dir`, driven over its control socket; implements `RunControl`.

    `read_only` (watch): every control that would change the job raises ReadOnly with a sentence.
    """

    def __init__(self, output_dir: Path, *, read_only: bool = False) -> None:
        self.output_dir = output_dir
        self.read_only = read_only
        self.path = find_socket(output_dir)
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._answers: dict[tuple[Any, ...], Any] = {}  # the last answer of each read, for once the job is gone
        self._lost = False
        self.ended = False  # run() has returned: the job's run is over

    # ----- the wire ---------------------------------------------------------------------------------

    def _connect(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(READ_TIMEOUT_S)
        self._sock.connect(os.fspath(self.path))
        self._file = self._sock.makefile("rb")

    def _drop(self) -> None:
        if self._sock is not None:
            self._file.close()
            self._sock.close()
        self._sock = self._file = None

    def _ask(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """A read, answered on the connection for reads; once the job is gone, its last answer."""
        key = (op, args, tuple(sorted(kwargs.items())))
        if self._lost:
            return self._answers.get(key, _EMPTY.get(op))
        try:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            self._sock.sendall(encode({"op": op, "args": args, "kwargs": kwargs}))
            line = self._file.readline(MAX_LINE)
        except TimeoutError:
            self._drop()  # an answer may still come: a new connection keeps questions and answers paired
            raise ControlError(f"the job did not answer within {READ_TIMEOUT_S:.0f} s") from None
        except OSError:
            line = b""
        if not line:
            self._drop()
            self._lost = True
            if self.ended:  # the run said it was over: its process has simply exited
                return self._answers.get(key, _EMPTY.get(op))
            raise ControlError("the job's control socket closed (the job ended or was killed): shown as of then")
        answer = _answer(op, line)
        if op in _EMPTY or op == "snapshot":
            self._answers[key] = answer
        return answer

    async def _ask_async(self, op: str, *args: Any) -> Any:
        """A control that may take a while, on its own connection."""
        try:
            reader, writer = await asyncio.open_unix_connection(os.fspath(self.path), limit=MAX_LINE)
        except OSError as error:
            raise ControlError(f"cannot reach the job ({error.strerror or error})") from None
        try:
            writer.write(encode({"op": op, "args": args}))
            await writer.drain()
            line = await reader.readline()
        except (OSError, ValueError) as error:
            raise ControlError(f"the job's control socket failed ({error})") from None
        finally:
            writer.close()
        if not line:
            raise ControlError("the job's control socket closed before it answered (the job ended or was killed)")
        return _answer(op, line)

    def _steer(self) -> None:
        if self.read_only:
            raise ReadOnly("watching read-only: `tokenflow attach` steers the job")

    def close(self) -> None:
        self._drop()

    # ----- RunControl ---------------------------------------------------------------------------------

    async def run(self) -> int:
        """Wait for the job's run to return; its exit code."""
        code: int = await self._ask_async("wait")
        self.ended = True
        return code

    async def shutdown(self) -> int:
        """Stop the job: it pauses softly, saves and ends; its exit code."""
        self._steer()
        code: int = await self._ask_async("shutdown")
        return code

    def snapshot(self) -> RunSnapshot:
        snapshot: RunSnapshot = self._ask("snapshot")
        return snapshot

    def row_count(self, row_filter: str = "all", sort: str = "input") -> int:
        count: int = self._ask("row_count", row_filter, sort)
        return count

    def rows(self, row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        rows: list[RequestRow] = self._ask("rows", row_filter, start, stop, sort)
        return rows

    # a search is a read: a watching view may look for requests too
    def sort_status(self, sort: str) -> SortStatus:
        status: SortStatus = self._ask("sort_status", sort)
        return status

    def search(self, query: str) -> SearchStatus:
        status: SearchStatus = self._ask("search", query)
        return status

    def search_status(self) -> SearchStatus:
        status: SearchStatus = self._ask("search_status")
        return status

    def find(self, position: int, direction: int, row_filter: str = "all", sort: str = "input") -> int | None:
        found: int | None = self._ask("find", position, direction, row_filter, sort)
        return found

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        attempts: list[dict[str, Any]] = self._ask("trajectory", index)
        return attempts

    def failed_groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = self._ask("failed_groups")
        return groups

    async def pause(self) -> None:
        self._steer()
        await self._ask_async("pause")

    async def resume(self) -> None:
        self._steer()
        await self._ask_async("resume")

    async def stop_now(self) -> None:
        self._steer()
        await self._ask_async("stop_now")

    def set_workers(self, n: int) -> str | None:
        self._steer()
        refusal: str | None = self._ask("set_workers", n)
        return refusal

    async def save(self) -> SaveReport:
        self._steer()
        report: SaveReport = await self._ask_async("save")
        return report

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        self._steer()
        refusal: str | None = self._ask("set_limits", requests_per_minute, tokens_per_minute)
        return refusal

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        self._steer()
        refusal: str | None = self._ask("set_budget", max_total_tokens, max_cost_usd)
        return refusal

    def reset_traffic(self) -> str | None:
        self._steer()
        refusal: str | None = self._ask("reset_traffic")
        return refusal

    def retry(self, indexes: Sequence[int]) -> int:
        self._steer()
        queued: int = self._ask("retry", list(indexes))
        return queued


def _answer(op: str, line: bytes) -> Any:
    try:
        message = decode(line)
        if "error" in message:
            raise ControlError(f"the job refused {op}: {message['error']}")
        return build(RETURNS.get(op, Any), message.get("ok"))
    except (WireError, TypeError) as error:
        raise ControlError(f"the job's answer to {op} cannot be read ({error})") from None

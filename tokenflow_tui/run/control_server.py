"""A run's control socket: any `RunControl` served to `tokenflow attach` and `watch`, on the run's own event loop.

One JSON message a line each way: `{"op": "rows", "args": [...], "kwargs": {...}}` answered by `{"ok": value}`
or `{"error": "a sentence"}`. A read is answered at once (what the local dashboard would call, no more); a
control that waits (a soft pause, a save) holds only its own connection. `wait` is answered with the exit
code when the run returns. No message carries an API key: the contract's answers have none.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..engine import StatsSnapshot
from ..store.state_file import STATE_FILE, read_state
from .contract import RequestRow, RunControl, RunSnapshot, SaveReport, SearchStatus, SortStatus
from .control_socket import ControlSocketError, bind, socket_path, write_info
from .control_wire import MAX_LINE, WireError, decode, encode
from .exit_codes import EXIT_DONE, EXIT_INTERRUPTED

log = logging.getLogger("tokenflow.control")

# what a peer may call: the reads and quick changes, answered on the spot, then the controls that take a while
READS = frozenset(
    {"snapshot", "row_count", "rows", "trajectory", "failed_groups", "set_workers", "set_limits", "set_budget"}
    | {"reset_traffic", "retry", "sort_status", "search", "search_status", "find"}
)
WAITS = frozenset({"pause", "resume", "stop_now", "save", "shutdown"})
_LAST_ANSWERS_TURNS = 200  # of 10 ms: how long the end of a run waits for answers still being given


class ControlServer:
    """Listens on the run's control socket from `__init__` (bound there, before the loop runs) to `close`."""

    def __init__(self, control: RunControl, output_dir: Path, about: dict[str, str]) -> None:
        """`about` goes to OUTPUT/control.json beside the socket's path: the job file, how to resume."""
        self.control = control
        self.output_dir = output_dir
        self.path = socket_path(output_dir)
        self._sock: socket.socket | None = bind(self.path)
        self._inode = os.stat(self.path).st_ino
        self._server: asyncio.Server | None = None
        self._ended: asyncio.Future[int] | None = None
        self._peers: set[asyncio.StreamWriter] = set()
        self._busy = 0  # messages being answered
        try:
            write_info(output_dir, {"socket": str(self.path), **about})  # the pid is in OUTPUT/.lock
        except ControlSocketError:
            self.close()
            raise

    async def start(self) -> None:
        """Serve on the running loop (once; later calls do nothing)."""
        if self._server is None and self._sock is not None:
            self._server = await asyncio.start_unix_server(self._serve, sock=self._sock, limit=MAX_LINE)

    def round_started(self) -> None:
        """A run round begins: `wait` answers at its end."""
        if self._ended is None or self._ended.done():
            self._ended = asyncio.get_running_loop().create_future()

    async def round_ended(self, code: int) -> None:
        """Answer `wait` with the exit code, and give the answers under way a moment to go out.

        The host closes the socket and exits right after: without that moment an attached view would hear of
        the end, or of its own `Q`, only as a lost connection.
        """
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(code)
        for _ in range(_LAST_ANSWERS_TURNS):
            if not self._busy:
                return
            await asyncio.sleep(0.01)

    def close(self) -> None:
        """Stop listening and remove the socket (a later run's socket at the same path is left alone)."""
        if self._server is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone already: the socket is closed below
                self._server.close()
            self._server = None
        for writer in self._peers:
            with contextlib.suppress(RuntimeError):
                writer.close()
        self._peers.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self._inode:
                    self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _same_user(writer):
            writer.close()  # the socket's mode keeps others out; this holds where a mode is not enough
            return
        self._peers.add(writer)
        try:
            while line := await reader.readline():
                self._busy += 1
                try:
                    writer.write(encode(await self._answer(line)))
                    await writer.drain()
                finally:
                    self._busy -= 1
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the peer went away or sent a line past the limit: its connection ends, the run goes on
        finally:
            self._peers.discard(writer)
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = decode(line)
            op = message.get("op")
            args: Sequence[Any] = message.get("args") or ()
            kwargs: dict[str, Any] = message.get("kwargs") or {}
            if op == "wait":
                return {"ok": await self._wait()}
            if op in READS:
                return {"ok": getattr(self.control, op)(*args, **kwargs)}
            if op in WAITS:
                return {"ok": await getattr(self.control, op)(*args, **kwargs)}
            return {"error": f"unknown control {op!r}"}
        except WireError as error:
            return {"error": str(error)}
        except Exception as error:  # noqa: BLE001 - a failed control is the caller's to report; the run goes on
            log.exception("control %s failed", line[:80])
            return {"error": f"{type(error).__name__}: {error}"}

    async def _wait(self) -> int:
        if self._ended is None:
            self.round_started()
        assert self._ended is not None
        return await asyncio.shield(self._ended)


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """The peer runs as this process's user (or root), as the kernel says (SO_PEERCRED)."""
    sock = writer.get_extra_info("socket")
    try:
        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except (AttributeError, OSError):
        return True  # no peer credentials on this system: the socket's mode alone decides
    return uid in (os.getuid(), 0)


class HostedRun(RunControl, Protocol):
    """A control that its host closes at the end (the job runner)."""

    def close(self) -> None: ...


class ControlProxy:
    """A `RunControl` that hands every call to the hosted control; subclasses change what they add."""

    def __init__(self, control: HostedRun) -> None:
        self.inner = control

    async def run(self) -> int:
        return await self.inner.run()

    async def shutdown(self) -> int:
        return await self.inner.shutdown()

    def close(self) -> None:
        self.inner.close()

    def snapshot(self) -> RunSnapshot:
        return self.inner.snapshot()

    def row_count(self, row_filter: str = "all", sort: str = "input") -> int:
        return self.inner.row_count(row_filter, sort)

    def rows(self, row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        return self.inner.rows(row_filter, start, stop, sort)

    def sort_status(self, sort: str) -> SortStatus:
        return self.inner.sort_status(sort)

    def search(self, query: str) -> SearchStatus:
        return self.inner.search(query)

    def search_status(self) -> SearchStatus:
        return self.inner.search_status()

    def find(self, position: int, direction: int, row_filter: str = "all", sort: str = "input") -> int | None:
        return self.inner.find(position, direction, row_filter, sort)

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        return self.inner.trajectory(index)

    def failed_groups(self) -> dict[str, list[int]]:
        return self.inner.failed_groups()

    async def pause(self) -> None:
        await self.inner.pause()

    async def resume(self) -> None:
        await self.inner.resume()

    async def stop_now(self) -> None:
        await self.inner.stop_now()

    def set_workers(self, n: int) -> str | None:
        return self.inner.set_workers(n)

    async def save(self) -> SaveReport:
        return await self.inner.save()

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        return self.inner.set_limits(requests_per_minute, tokens_per_minute)

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        return self.inner.set_budget(max_total_tokens, max_cost_usd)

    def reset_traffic(self) -> str | None:
        return self.inner.reset_traffic()

    def retry(self, indexes: Sequence[int]) -> int:
        return self.inner.retry(indexes)


class ServedControl(ControlProxy):
    """The hosted control, listening on its control socket while it runs."""

    def __init__(self, control: HostedRun, server: ControlServer) -> None:
        super().__init__(control)
        self.server = server

    async def run(self) -> int:
        await self.server.start()
        self.server.round_started()
        code = await self.inner.run()
        await self.server.round_ended(code)
        return code

    def close(self) -> None:
        self.server.close()
        self.inner.close()


class StoppedRun(ControlProxy):
    """A run that is not running, opened from its files to be looked at: `run()` returns at once.

    Its snapshot says it is paused (or done) rather than starting, when it was last saved, and how to resume.
    """

    def __init__(self, control: HostedRun, resume: str) -> None:
        super().__init__(control)
        state = read_state(Path(control.snapshot().output_dir) / STATE_FILE) or {}
        saved_at = state.get("saved_at")
        self._saved_at = float(saved_at) if isinstance(saved_at, int | float) else None
        self._reason = f"the job is not running: `{resume}` resumes it"

    def _finished(self, stats: StatsSnapshot) -> bool:
        return stats.total is not None and stats.finished >= stats.total

    async def run(self) -> int:
        return EXIT_DONE if self._finished(self.inner.snapshot().stats) else EXIT_INTERRUPTED

    def snapshot(self) -> RunSnapshot:
        snapshot = self.inner.snapshot()
        if self._finished(snapshot.stats):
            return dataclasses.replace(snapshot, state="done", saved_at=self._saved_at)
        return dataclasses.replace(snapshot, state="paused", reason=self._reason, saved_at=self._saved_at)

"""An idle timeout: the task is cancelled when nothing arrived for `idle_s` seconds (between stream chunks).

`with IdleTimer(idle_s) as idle:` then `idle.touch()` at each arrival. One timer per block, moved
lazily: when it fires early (something arrived since it was set) it is set again for the new due
time, so a touch costs one clock read instead of rescheduling a timer per chunk.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class IdleTimeout(TimeoutError):
    """Nothing arrived for the idle timeout."""


class IdleTimer:
    """Raises IdleTimeout out of the block when `touch()` was not called for `idle_s` seconds."""

    __slots__ = ("_idle_s", "_loop", "_task", "_cancelling", "_last", "_handle", "_expired")

    def __init__(self, idle_s: float) -> None:
        if not idle_s > 0:
            raise ValueError(f"IdleTimer: idle_s must be > 0, got {idle_s}")
        self._idle_s = idle_s
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    def __enter__(self) -> IdleTimer:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("IdleTimer must be entered inside an asyncio task")
        self._task = task
        self._cancelling = task.cancelling()
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._handle = self._loop.call_at(self._last + self._idle_s, self._check)
        return self

    def touch(self) -> None:
        """Something arrived: the idle time starts again."""
        self._last = self._loop.time()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._expired:
            return
        self._expired = False
        # this timer's own cancellation is taken back; any other one (a deadline, a hard stop) still stands
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise IdleTimeout from exc

    def _check(self) -> None:
        due = self._last + self._idle_s
        if due > self._loop.time():
            self._handle = self._loop.call_at(due, self._check)
            return
        self._handle = None
        self._expired = True
        self._task.cancel()

"""One deadline for each of many concurrent attempts, kept with a single timer.

`with deadlines:` inside a task behaves as `async with asyncio.timeout(timeout_s):` does (the task is
cancelled at the deadline and a TimeoutError, DeadlineExceeded, raised out of the block; a
cancellation from elsewhere stays a cancellation), but asyncio.timeout() makes, schedules and cancels
a timer per block, which costs about a twentieth of the client's CPU per request at a few thousand requests a second.
Every block has the same length, so deadlines come in the order the blocks are entered: a dict in
insertion order is their queue, earliest first, and one timer set for its head is enough.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

_current_task = asyncio.current_task
_running_loop = asyncio.get_running_loop


class DeadlineExceeded(TimeoutError):
    """Raised out of a `with deadlines:` block whose deadline came (a TimeoutError from within is not one)."""


class Deadlines:
    """Use as `with deadlines:` inside an asyncio task; one block at a time per task."""

    def __init__(self, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ValueError(f"Deadlines: timeout_s must be > 0, got {timeout_s}")
        self._timeout_s = timeout_s
        # task → (deadline on the loop's clock, how many cancellations it had pending on entry)
        self._due: dict[asyncio.Task[object], tuple[float, int]] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        # the loop the blocks run on (one at a time: the timer is on it)
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> None:
        # asyncio.current_task() without a loop asks for the running one, and 3.11 makes a getpid()
        # system call each time: the loop of the last block is asked first (it has no task running
        # now when this block runs on another loop)
        loop = self._loop
        task = None if loop is None else _current_task(loop)
        if loop is None or task is None:
            loop = self._loop = _running_loop()
            task = _current_task(loop)
            if task is None:
                raise RuntimeError("Deadlines must be entered inside an asyncio task")
        deadline = loop.time() + self._timeout_s
        self._due[task] = (deadline, task.cancelling())
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task = _current_task(self._loop)
        assert task is not None
        _, cancelling = self._due.pop(task)
        if task not in self._expired:
            return
        self._expired.discard(task)
        # the deadline's own cancellation is taken back; any other one still stands
        if task.uncancel() <= cancelling and exc_type is asyncio.CancelledError:
            raise DeadlineExceeded from exc

    def _expire(self) -> None:
        self._timer = None
        loop = _running_loop()
        now = loop.time()
        for task, (deadline, _) in self._due.items():
            if deadline > now:
                self._timer = loop.call_at(deadline, self._expire)
                return
            if task not in self._expired:
                self._expired.add(task)
                task.cancel()  # delivered later, at the task's await: the dict is not changed meanwhile

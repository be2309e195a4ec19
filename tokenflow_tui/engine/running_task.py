"""The task running now, cheaply: the deadlines and the ledger ask for it several times per attempt."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

if sys.version_info >= (3, 12):
    current_task = asyncio.current_task  # written in C from 3.12 on
else:
    # 3.11's asyncio.current_task is a Python function over this dict (loop → its running task),
    # and a few percent of the client's CPU at a few thousand requests a second
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

    _task_of: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = _current_tasks.get
    _running_loop = asyncio.get_running_loop

    def current_task() -> asyncio.Task[Any] | None:
        """The task running on this thread's event loop (RuntimeError without a running loop)."""
        return _task_of(_running_loop())

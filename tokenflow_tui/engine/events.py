"""Events the engine reports to a user's callback, and their delivery."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from .trajectory import TokenFlowRequestTrajectory

logger = logging.getLogger("tokenflow")


@dataclass(slots=True)
class UnexpectedUserException:
    """The result of a request whose handler raised."""

    exception_str: str
    traceback_str: str


@dataclass(slots=True)
class TokenFlowDoneEvent:
    request_id: Any
    result: Any
    request_trajectory: TokenFlowRequestTrajectory
    payload: Any


@dataclass(slots=True)
class TokenFlowContinueEvent:
    request_id: Any
    continue_params: Any
    result: Any
    request_trajectory: TokenFlowRequestTrajectory
    payload: Any


@dataclass(slots=True)
class TokenFlowCancelledEvent:
    request_id: Any
    request_trajectory: TokenFlowRequestTrajectory


@dataclass(slots=True)
class TokenFlowUserExceptionEvent:
    request_id: Any
    exception_str: str
    traceback_str: str
    request_trajectory: TokenFlowRequestTrajectory


TokenFlowEvent: TypeAlias = (
    TokenFlowDoneEvent | TokenFlowContinueEvent | TokenFlowCancelledEvent | TokenFlowUserExceptionEvent
)
EventCallback: TypeAlias = Callable[[TokenFlowEvent], Any]


class EventDispatcher:
    """Calls a sync callback inline; runs an async one in its own task, in order, so workers never wait.

    A failing callback is logged and never stops the run.
    """

    def __init__(self, callback: EventCallback) -> None:
        self._callback = callback
        self._is_async = inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)
        )
        self._pending: deque[TokenFlowEvent] = deque()
        self._drainer: asyncio.Task[None] | None = None

    def emit(self, event: TokenFlowEvent) -> None:
        if not self._is_async:
            try:
                self._callback(event)
            except Exception:
                logger.exception("event callback raised on %s", type(event).__name__)
            return
        self._pending.append(event)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            event = self._pending.popleft()
            try:
                await self._callback(event)
            except Exception:
                logger.exception("event callback raised on %s", type(event).__name__)

    async def flush(self) -> None:
        """Wait until every event emitted so far has been delivered."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

"""Event-loop lag: how late a periodic callback fires, p99 over the last minute."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol


class LagProbe(Protocol):
    def start(self) -> None:
        """Begin measuring on the running event loop."""
        ...

    def stop(self) -> None: ...

    def p99_ms(self) -> float | None:
        """The 99th percentile of the lag over the window, or None before any sample."""
        ...


class LoopLagMonitor:
    """Schedules a callback every `interval_s` on the loop itself and notes how late it runs.

    It uses the loop's own `call_at`, not a Textual timer, so what it measures is the loop's lag,
    not the app's message queue.
    """

    def __init__(
        self, interval_s: float = 0.1, window_s: float = 60.0, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._loop = loop
        self._samples: deque[tuple[float, float]] = deque()  # (loop time, lag in seconds)
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._schedule(self._loop.time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.interval_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.note(now, now - self._due)
        self._schedule(now)

    def note(self, now: float, lag_s: float) -> None:
        """Record one sample and forget those older than the window."""
        self._samples.append((now, max(0.0, lag_s)))
        horizon = now - self.window_s
        while self._samples[0][0] < horizon:
            self._samples.popleft()

    def p99_ms(self) -> float | None:
        if not self._samples:
            return None
        # at most window_s / interval_s samples (600 by default): sorting them is cheap
        lags = sorted(lag for _, lag in self._samples)
        return lags[(len(lags) * 99 + 99) // 100 - 1] * 1000  # nearest rank

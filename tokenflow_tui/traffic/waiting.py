"""Waiting that a pause of the job cuts short: naps and a first-come queue for a free slot.

A nap also ends early on `wake()`, when what it waits for changed (a limit raised, cleared or
lowered, a pace let go): the waiter then works out its wait again.

A worker held back before its attempt holds a request; when the job pauses, it must give the
request back at once rather than sleep out a long hold, so every wait here ends early when
`running()` turns false, by raising CancelledError: the engine then puts the request back at the
front of its queue, exactly as for a hard stop, and no attempt is recorded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..engine import Clock

WATCH_S = 0.1  # how often a pause is looked for while some worker waits


class Waiting:
    def __init__(self, clock: Clock, running: Callable[[], bool]) -> None:
        self._clock = clock
        self._running = running
        self._stopped: asyncio.Future[None] | None = None
        self._changed: asyncio.Future[None] | None = None
        self._waiters = 0
        self._watcher: asyncio.Task[None] | None = None
        self._slots: deque[asyncio.Future[None]] = deque()

    def check(self) -> None:
        """Raise CancelledError when the job no longer runs."""
        if not self._running():
            raise asyncio.CancelledError

    async def nap(self, seconds: float) -> None:
        """Sleep `seconds` by the clock, or less when the job stops meanwhile (then raise CancelledError)."""
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        try:
            await self._until(sleeper, self._changed)
        finally:
            sleeper.cancel()

    def wake(self) -> None:
        """End every nap now: what they wait for changed."""
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    async def slot(self) -> None:
        """Wait for `free_slots` to let this waiter go (first come, first served), or for the job to stop."""
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slots.append(ticket)
        try:
            await self._until(ticket)
        finally:
            if not ticket.done():
                ticket.cancel()  # free_slots skips it

    def free_slots(self, count: int) -> None:
        """Let up to `count` of the waiters for a slot go."""
        slots = self._slots
        while count > 0 and slots:
            ticket = slots.popleft()
            if not ticket.done():
                ticket.set_result(None)
                count -= 1

    async def _until(self, *events: asyncio.Future[None]) -> None:
        self.check()
        if self._stopped is None or self._stopped.done():
            self._stopped = asyncio.get_running_loop().create_future()
        stopped = self._stopped
        self._waiters += 1
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())
        try:
            await asyncio.wait((*events, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiters -= 1
        self.check()

    async def _watch(self) -> None:
        """One watcher for all waiters, alive only while someone waits."""
        try:
            while self._waiters:
                await self._clock.sleep(WATCH_S)
                if not self._running() and self._stopped is not None and not self._stopped.done():
                    self._stopped.set_result(None)
        finally:
            self._watcher = None

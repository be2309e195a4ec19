"""A dead server pauses the job instead of burning the input (DESIGN §6).

When every attempt of the last `ATTEMPTS` (over `SPAN_S` at least) failed to connect — refused,
DNS, TLS — and none reached the server, the job pauses with a sentence naming the address. The
attempts that failed to connect meanwhile are held (for `SPAN_S` at most) instead of being spent:
when the job pauses they are given back (the engine runs them again, unspent); when an attempt
reaches the server, they go on as ordinary failed attempts. Resuming sends one probe first, and
opens the gate to the others once it reaches the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..engine import Clock, TokenFlowRequest
from ..traffic.waiting import Waiting

ATTEMPTS = 20
SPAN_S = 5.0
LOOK_S = 0.1  # how often held attempts look whether the streak was broken


class Unreachable:
    """`reached()` and `await unreached(message)` are the built-in handler's hooks; `await gate()` the runner's."""

    def __init__(self, address: str, clock: Clock, running: Callable[[], bool], pause: Callable[[str], None]) -> None:
        self._address = address
        self._clock = clock
        self._waiting = Waiting(clock, running)
        self._pause = pause
        self._since: float | None = None  # when the streak of attempts that could not connect began
        self._count = 0
        self._broken = 0  # streaks broken so far: a held attempt goes on once this moves
        self._paused = False  # the job paused because of this
        self._probing = False  # after such a pause: one attempt goes first
        self._probe_out = False

    def reached(self) -> None:
        """An attempt reached the server: the streak, and a probe, are over."""
        if self._since is not None:
            self._since = None
            self._count = 0
            self._broken += 1
        if self._probing:
            self._probing = self._probe_out = False

    def attempt_ended(self) -> None:
        """An attempt ended: when it was the probe and told nothing (its handler raised), another goes."""
        if self._probing:
            self._probe_out = False

    async def unreached(self, message: str) -> None:
        """An attempt could not connect: hold it until the server is judged (CancelledError: give it back)."""
        now = self._clock.monotonic()
        if self._since is None:
            self._since = now
        self._count += 1
        broken = self._broken
        if self._probing:
            self._judged_dead(message, "the first attempt after the resume failed to connect too")
        while self._broken == broken:
            if self._count >= ATTEMPTS and now - self._since >= SPAN_S:
                self._judged_dead(
                    message, f"{self._count:,} attempts in a row over {now - self._since:.0f} s failed to connect"
                )
            if now - self._since >= SPAN_S:
                return  # too few attempts to tell a dead server: this one counts as an ordinary failure
            await self._waiting.nap(min(LOOK_S, self._since + SPAN_S - now))
            now = self._clock.monotonic()

    async def gate(self, request: TokenFlowRequest) -> None:
        """Before an attempt: after the pause this detector caused, the first one goes alone as a probe."""
        while self._probing:
            if not self._probe_out:
                self._probe_out = True
                return
            request.waiting_for = "the first request after the resume to reach the server"
            await self._waiting.nap(LOOK_S)

    @property
    def probe_out(self) -> bool:
        """After a resume, the probe is out: the other attempts wait for it at `gate`."""
        return self._probing and self._probe_out

    def resumed(self) -> None:
        """The job runs again: when this detector paused it, probe first."""
        if self._paused:
            self._paused = False
            self._probing = True
            self._probe_out = False
            self._since, self._count = None, 0

    def _judged_dead(self, message: str, evidence: str) -> None:
        """Pause the job and give this attempt back (the engine runs it again, unspent)."""
        if not self._paused:
            self._paused = True
            self._pause(
                f"the server at {self._address} cannot be reached ({evidence}: {message}); "
                "check that it runs and the address, then resume"
            )
        raise asyncio.CancelledError

"""The dead-server detector: attempts that could not connect are held, a dead server pauses the job and gives
them back unspent, one that answers lets them go on, and a resume probes first. Time is a ManualClock.
"""

from __future__ import annotations

import asyncio

import pytest

from tokenflow_tui.engine import ManualClock
from tokenflow_tui.engine.trajectory import new_request
from tokenflow_tui.run.unreachable import Unreachable

ADDRESS = "http://127.0.0.1:9/v1"


class Job:
    """What the detector sees of the job: whether it runs, and its pauses."""

    def __init__(self) -> None:
        self.clock = ManualClock(start=0.0)
        self.running = True
        self.pauses: list[str] = []
        self.detector = Unreachable(ADDRESS, self.clock, lambda: self.running, self.pause)

    def pause(self, reason: str) -> None:
        self.pauses.append(reason)
        self.running = False

    def fail_to_connect(self, n: int) -> list[asyncio.Task[None]]:
        return [asyncio.ensure_future(self.detector.unreached("refused")) for _ in range(n)]

    async def advance(self, seconds: float, steps: int = 1) -> None:
        for _ in range(steps):
            await settle()
            self.clock.advance(seconds / steps)
            await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_twenty_attempts_that_cannot_connect_over_five_seconds_pause_the_job_and_are_given_back():
    job = Job()
    held = job.fail_to_connect(20)
    await job.advance(4.9, steps=49)
    assert not any(t.done() for t in held) and job.pauses == []  # held, not spent
    await job.advance(0.2, steps=2)
    await job.advance(0.2, steps=2)  # the pause reaches the other holders at their next look
    assert job.pauses == [
        f"the server at {ADDRESS} cannot be reached (20 attempts in a row over 5 s failed to connect: refused); "
        "check that it runs and the address, then resume"
    ]
    assert all(t.cancelled() for t in held)  # the engine runs each again, unspent


async def test_an_attempt_that_reaches_the_server_lets_the_held_ones_go_on_as_ordinary_failures():
    job = Job()
    held = job.fail_to_connect(30)
    await job.advance(1.0, steps=10)
    job.detector.reached()
    await job.advance(0.2, steps=2)
    assert all(t.done() and not t.cancelled() for t in held) and job.pauses == []


async def test_too_few_attempts_to_tell_go_on_after_five_seconds():
    job = Job()
    held = job.fail_to_connect(3)
    await job.advance(5.2, steps=52)
    assert all(t.done() and not t.cancelled() for t in held) and job.pauses == []


async def test_a_resume_sends_one_probe_and_opens_the_gate_once_it_reaches_the_server():
    job = Job()
    held = job.fail_to_connect(20)
    await job.advance(5.4, steps=54)
    assert len(job.pauses) == 1 and all(t.cancelled() for t in held)
    job.running = True
    job.detector.resumed()
    requests = [new_request(i, {}) for i in range(3)]
    gates = [asyncio.ensure_future(job.detector.gate(r)) for r in requests]
    await job.advance(0.3, steps=3)
    assert [g.done() for g in gates] == [True, False, False]
    assert requests[1].waiting_for == "the first request after the resume to reach the server"
    job.detector.reached()
    await job.advance(0.2, steps=2)
    assert all(g.done() for g in gates)


async def test_a_probe_that_cannot_connect_pauses_the_job_again_at_once():
    job = Job()
    job.fail_to_connect(20)
    await job.advance(5.4, steps=54)
    job.running = True
    job.detector.resumed()
    await job.detector.gate(new_request(0, {}))
    with pytest.raises(asyncio.CancelledError):
        await job.detector.unreached("refused")
    assert len(job.pauses) == 2
    assert "(the first attempt after the resume failed to connect too: refused)" in job.pauses[1]

"""Traffic as the engine and the handler use it: holds, rate limits, the in-flight cap, budgets, storms.

Time is a ManualClock; the handler is a plain coroutine, so each test says exactly what happened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from run_helpers import write_job

from tokenflow_tui.engine import ActionContinue, ActionDone, ManualClock, UnexpectedUserException
from tokenflow_tui.engine.trajectory import new_request
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.traffic import Traffic


class FixedRng:
    def random(self) -> float:
        return 0.5


class Harness:
    """A Traffic with its callbacks recorded, and the engine's ledger played by hand."""

    def __init__(
        self,
        tmp_path: Path,
        limits: dict[str, Any] | None = None,
        workers: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        (tmp_path / "in.jsonl").write_text('{"prompt": "x"}\n')
        sections: dict[str, Any] = {
            "job": {"name": "t", "input": "in.jsonl"},
            "endpoint": {"simulate": True},
            "request": {"params": params or {}},
            "workers": workers or {"count": 4},
        }
        if limits:
            sections["limits"] = limits
        self.job = load_job(write_job(tmp_path, sections))
        self.clock = ManualClock(start=0.0)
        self.running = True
        self.pauses: list[str] = []
        self.workers: list[int] = []
        self.tokens = (0, 0)
        self.sending = 0  # attempts past the gate whose handler has not ended
        self.sent_at: float | None = None
        self.traffic = Traffic(
            self.job,
            self.job.workers.count,
            clock=self.clock,
            running=lambda: self.running,
            pause=self.pauses.append,
            apply_workers=self.workers.append,
            spent=lambda: self.tokens,
            sending=lambda: self.sending,
            sent_at=lambda: self.sent_at,
            rng=FixedRng(),
        )

    def start(self, line: dict[str, Any] | None = None) -> tuple[Any, asyncio.Task[None]]:
        """A request's trip through before_attempt, then sent as the engine does, as a task; (request, task)."""
        request = new_request(0, line or {"prompt": "x"})

        async def gate_then_send() -> None:
            await self.traffic.before_attempt(request)
            self.sending += 1
            self.sent_at = self.clock.monotonic()

        return request, asyncio.ensure_future(gate_then_send())

    def wrap(self, handler):
        """The handler as the engine runs an attempt that `start` sent: traffic hears how it ended."""

        async def attempt(trajectory):
            element = trajectory.trajectory[-1]
            try:
                outcome = await handler(trajectory)
            except Exception as exc:
                element.result, element.action = UnexpectedUserException(repr(exc), ""), ActionDone()
                raise
            else:
                element.action, element.result = outcome[0], outcome[1]
            finally:
                self.sending -= 1
                self.traffic.attempt_ended(trajectory)
            return outcome

        return attempt

    async def advance(self, seconds: float) -> None:
        await settle()
        self.clock.advance(seconds)
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def replying(*outcomes: tuple[Any, ...]):
    """A handler that returns the given outcomes in turn."""
    queue = list(outcomes)

    async def handler(trajectory):
        return queue.pop(0)

    return handler


async def refused(h: Harness, count: int, retry_after_s: float) -> None:
    """`count` attempts sent now, each refused with a 429 asking to wait `retry_after_s`, as the built-in handler says."""

    async def handler(trajectory):
        h.traffic.on_rate_limit(retry_after_s)
        return failed("http_429", 429, final=False)

    started = [h.start() for _ in range(count)]
    await settle()
    assert all(task.done() for _, task in started)
    wrapped = h.wrap(handler)
    for request, _ in started:
        await wrapped(request.request_trajectory)


async def good_answers(h: Harness, count: int) -> None:
    """`count` requests sent and answered well, one after the other, at this moment."""
    wrapped = h.wrap(replying(*[ok()] * count))
    for _ in range(count):
        request, _ = h.start()
        await settle()
        await wrapped(request.request_trajectory)


async def passed_after(h: Harness, tasks: list[asyncio.Task[None]], steps: list[float]) -> list[int]:
    """How many of `tasks` passed after each step of time; the ones left are cancelled at the end."""
    passed = []
    for seconds in steps:
        await h.advance(seconds)
        passed.append(sum(task.done() for task in tasks))
    for task in tasks:
        task.cancel()
    return passed


def ok(usage: dict[str, int] | None = None) -> tuple[Any, ...]:
    return ActionDone(), {"text": "hi", "usage": usage, "status_code": 200, "finish_reason": "stop"}, None


def failed(kind: str, status: int | None, final: bool = True) -> tuple[Any, ...]:
    error = {"error": {"kind": kind, "message": "m", "status_code": status, "excerpt": None}}
    return (ActionDone() if final else ActionContinue({"prompt": "x"}, 1.0)), error, None


async def test_one_429_holds_no_one_but_several_hold_every_worker_with_a_jittered_release(tmp_path):
    h = Harness(tmp_path)
    h.traffic.on_rate_limit(2.0)
    _, passing = h.start()
    await settle()
    assert passing.done() and h.traffic.view().holds == 0
    for _ in range(4):  # five of the first eight: more than a server refusing some at random gives
        h.traffic.on_rate_limit(2.0)
    view = h.traffic.view()
    assert (view.holds, view.held_s, view.held_because) == (1, 2.0, "the server answers 429 (too many requests)")
    _, held = h.start()
    await h.advance(2.0)
    assert not held.done()  # released at 2 s + half of the quarter-hold jitter
    await h.advance(0.25)
    assert held.done() and held.exception() is None
    assert h.traffic.view().held_because is None


async def test_429s_that_a_hold_did_not_stop_pace_dispatch_at_the_limit_they_imply(tmp_path):
    h = Harness(tmp_path)
    await good_answers(h, 120)
    await h.advance(6.0)
    await refused(h, 5, retry_after_s=1.0)
    view = h.traffic.view()
    assert (view.holds, view.pace_per_minute) == (1, 0.0)  # a hold first: a pace only when it is not enough
    await h.advance(1.5)  # past the hold and its jitter
    await refused(h, 5, retry_after_s=52.5)  # sent after the hold, refused as well: the rest of the minute
    assert h.traffic.view().pace_per_minute == pytest.approx(0.8 * 120)
    await h.advance(55.0)  # past the hold and its jitter (half of 2 s)
    tasks = [h.start()[1] for _ in range(20)]
    await settle()
    # paced at 1.6 a second, one at once: the first goes, the next every 0.625 s; workers beyond
    # a second's worth of waiting reservations look again a second later, without reserving yet
    assert sum(t.done() for t in tasks) == 1
    # two reservations wait (-2 in the bucket): not nineteen at the pace of now, kept if it grows
    assert h.traffic._paced.level(h.clock.monotonic()) == pytest.approx(-2.0)
    assert await passed_after(h, tasks, [1.0, 1.0, 0.5]) == [2, 4, 5]


async def test_a_held_attempt_gives_its_request_back_when_the_job_pauses(tmp_path):
    h = Harness(tmp_path)
    for _ in range(5):
        h.traffic.on_rate_limit(30.0)
    _, held = h.start()
    await h.advance(1.0)
    h.running = False
    await h.advance(0.1)  # the watcher looks every 0.1 s
    assert held.cancelled()
    _, refused = h.start()
    await settle()
    assert refused.cancelled()


async def test_requests_per_minute_pace_every_worker_together(tmp_path):
    h = Harness(tmp_path, limits={"requests_per_minute": 60})
    tasks = [h.start()[1] for _ in range(4)]
    passed = []
    for _second in range(5):
        await settle()
        passed.append(sum(t.done() for t in tasks))
        await h.advance(1.0)
    assert passed == [1, 2, 3, 4, 4]
    assert h.traffic.view().requests_per_minute == 60


async def test_tokens_per_minute_reserve_the_estimate_and_the_usage_corrects_it(tmp_path):
    h = Harness(tmp_path, limits={"tokens_per_minute": 6000}, params={"max_tokens": 6})  # 100 a second, 10 at once
    line = {"prompt": "a" * 16}  # 4 + 6 = 10 tokens estimated: the whole bucket
    request, first = h.start(line)
    await settle()
    assert first.done()
    # it used 2 tokens, not 10: 8 come back, so the next waits for 2 more (20 ms), not for 10 (100 ms)
    await h.wrap(replying(ok({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})))(
        request.request_trajectory
    )
    _, second = h.start(line)
    await h.advance(0.015)
    assert not second.done()
    await h.advance(0.01)
    assert second.done()


async def test_an_adaptive_job_keeps_no_more_in_flight_than_its_target(tmp_path):
    h = Harness(tmp_path, workers={"count": 2, "adaptive": True, "min": 1, "max": 8})
    (r1, t1), (r2, t2), (_, t3) = h.start(), h.start(), h.start()
    await settle()
    assert (t1.done(), t2.done(), t3.done()) == (True, True, False)
    wrapped = h.wrap(replying(ok(), ok()))
    await wrapped(r1.request_trajectory)
    await settle()
    assert t3.done() and h.workers == []  # a slot came free; slow start: 2 + 0.5 rounds down to 2
    await wrapped(r2.request_trajectory)
    assert h.workers == [3]
    assert h.traffic.view().target_workers == 3


async def test_overload_cuts_the_adaptive_target_and_holds_dispatch(tmp_path):
    h = Harness(tmp_path, workers={"count": 10, "adaptive": True, "min": 2, "max": 20})
    requests = [h.start()[0] for _ in range(8)]
    await settle()
    wrapped = h.wrap(replying(*[failed("http_429", 429, final=False)] * 8))
    for request in requests:
        h.traffic.on_rate_limit(0.5)  # what the handler does before it returns a 429
        await wrapped(request.request_trajectory)
    view = h.traffic.view()
    assert (view.target_workers, view.cuts, view.holds) == (7, 1, 1)
    assert h.workers == [7]


async def test_x_ratelimit_headers_hold_dispatch_until_the_allowance_is_back(tmp_path):
    h = Harness(tmp_path)
    h.traffic.on_headers(
        {
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-remaining-requests": "5",
            "x-ratelimit-reset-requests": "10s",
        }
    )
    assert h.traffic.view().remaining_requests == 5 and h.traffic.view().holds == 0
    h.traffic.on_headers(
        {
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "10s",
        }
    )
    view = h.traffic.view()
    assert (view.remaining_requests, view.held_s) == (0, pytest.approx(0.1))  # one request of 100 in 10 s
    assert view.held_because == "the server's x-ratelimit-remaining-requests is spent"


async def test_the_token_budget_pauses_the_job_once_and_a_resume_allows_as_many_again(tmp_path):
    h = Harness(tmp_path, limits={"max_total_tokens": 100})
    wrapped = h.wrap(replying(*[ok({"prompt_tokens": 30, "completion_tokens": 10, "total_tokens": 40})] * 4))
    for spent in ((30, 10), (60, 20), (90, 30)):
        request, _ = h.start()
        await settle()
        h.tokens = spent  # the runner's statistics count the usage before traffic looks
        await wrapped(request.request_trajectory)
    assert h.pauses == [
        "the token budget is spent: 120 tokens used of 100 allowed (limits.max_total_tokens); "
        "resume to allow as many again"
    ]
    h.traffic.resumed()
    assert h.traffic.view().max_total_tokens == 220
    request, _ = h.start()
    await settle()
    h.tokens = (120, 40)
    await wrapped(request.request_trajectory)
    assert len(h.pauses) == 1


async def test_a_new_run_of_a_job_that_spent_its_budget_gets_another(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"prompt": "x"}\n')
    job = load_job(
        write_job(
            tmp_path,
            {
                "job": {"name": "t", "input": "in.jsonl"},
                "endpoint": {"simulate": True},
                "limits": {"max_total_tokens": 100},
            },
        )
    )
    traffic = Traffic(
        job,
        4,
        clock=ManualClock(),
        running=lambda: True,
        pause=print,
        apply_workers=print,
        spent=lambda: (100, 50),
        sending=lambda: 0,
        sent_at=lambda: None,
    )
    assert (traffic.view().tokens_used, traffic.view().max_total_tokens) == (150, 250)


async def test_a_storm_of_errors_retrying_cannot_fix_pauses_the_job(tmp_path):
    h = Harness(tmp_path)
    wrapped = h.wrap(replying(*[failed("http_4xx", 404)] * 30))
    for _ in range(20):
        request, _ = h.start()
        await settle()
        await wrapped(request.request_trajectory)
    assert h.pauses == [
        "20 of the last 20 requests failed with errors that retrying cannot fix (mostly HTTP 404, 20 times); "
        "check the job and the failed requests, then resume to go on anyway"
    ]
    h.traffic.resumed()
    for _ in range(10):
        request, _ = h.start()
        await settle()
        await wrapped(request.request_trajectory)
    assert len(h.pauses) == 1  # the user chose to go on


async def test_a_handler_that_raises_on_every_request_is_a_storm_too(tmp_path):
    h = Harness(tmp_path)

    async def broken(trajectory):
        raise KeyError("answer")

    wrapped = h.wrap(broken)
    for _ in range(20):
        request, _ = h.start()
        await settle()
        with pytest.raises(KeyError):
            await wrapped(request.request_trajectory)
    assert (
        h.pauses and h.pauses[0].startswith("20 of the last 20 requests failed") and "handler_exception" in h.pauses[0]
    )


async def test_retryable_failures_are_not_a_storm(tmp_path):
    h = Harness(tmp_path)
    wrapped = h.wrap(replying(*[failed("http_5xx", 500)] * 40))
    for _ in range(40):
        request, _ = h.start()
        await settle()
        await wrapped(request.request_trajectory)
    assert h.pauses == []


async def test_live_changes_are_checked_and_explained(tmp_path):
    h = Harness(tmp_path)
    traffic = h.traffic
    assert traffic.set_limits(-1, 0) == "requests per minute must be a number of 0 or more, not -1"
    assert traffic.set_limits(10, 2.5) == "tokens per minute must be a whole number of 0 or more, not 2.5"
    assert traffic.set_limits(120, 5000) is None
    assert (traffic.view().requests_per_minute, traffic.view().tokens_per_minute) == (120, 5000)
    assert traffic.set_limits(0, 0) is None
    assert (traffic.view().requests_per_minute, traffic.view().tokens_per_minute) == (0, 0)
    assert traffic.set_budget(-5, 0) == "the token budget must be a whole number of 0 or more, not -5"
    assert traffic.set_budget(0, float("nan")) == "the cost budget must be a number of 0 or more, not nan"
    assert traffic.set_budget(0, 3.0) == (
        "a cost budget needs the prices in the job file "
        "(limits.price_input_per_million_usd and limits.price_output_per_million_usd)"
    )
    assert traffic.set_budget(5000, 0) is None and traffic.view().max_total_tokens == 5000


async def test_the_view_shows_the_cost_with_prices(tmp_path):
    h = Harness(
        tmp_path, limits={"max_cost_usd": 2.0, "price_input_per_million_usd": 1.0, "price_output_per_million_usd": 4.0}
    )
    h.tokens = (1_000_000, 100_000)
    view = h.traffic.view()
    assert (view.cost_usd, view.max_cost_usd, view.tokens_used) == (pytest.approx(1.4), 2.0, 1_100_000)


# ----- live changes apply to the requests already waiting -----------------------------------------


async def test_clearing_a_tokens_limit_releases_the_waiting_requests_at_once(tmp_path):
    # 1,000 tokens a minute; 4 + 16 = 20 tokens estimated a request: one every 1.2 s, after a burst of one
    h = Harness(tmp_path, limits={"tokens_per_minute": 1000}, params={"max_tokens": 16})
    tasks = [h.start({"prompt": "a" * 16})[1] for _ in range(10)]
    await h.advance(1.2)
    assert sum(t.done() for t in tasks) == 1  # the rest wait up to 12 s on the bucket
    assert h.traffic.set_limits(0, 0) is None
    await settle()
    assert all(t.done() and t.exception() is None for t in tasks)
    assert h.traffic.view().tokens_per_minute == 0


async def test_a_limit_raised_or_lowered_applies_to_the_requests_waiting(tmp_path):
    h = Harness(tmp_path, limits={"requests_per_minute": 60})  # one a second, one at once
    tasks = [h.start()[1] for _ in range(7)]
    await settle()
    assert sum(t.done() for t in tasks) == 1  # the others are owed 1 … 6 s
    assert h.traffic.set_limits(600, 0) is None  # ten a second: the six waiting go within 0.6 s
    await h.advance(0.35)
    assert sum(t.done() for t in tasks) == 4
    # one every 10 s: the next, owed half a request at 0.35 s, goes 5 s later; the one after it 10 s later again
    assert h.traffic.set_limits(6, 0) is None
    assert await passed_after(h, tasks, [4.9, 0.1, 9.9, 0.1]) == [4, 5, 5, 6]


async def test_raising_a_spent_budget_releases_the_job_it_paused(tmp_path):
    h = Harness(tmp_path, limits={"max_total_tokens": 100})
    wrapped = h.wrap(replying(ok({"prompt_tokens": 90, "completion_tokens": 30, "total_tokens": 120})))
    request, _ = h.start()
    await settle()
    h.tokens = (90, 30)
    await wrapped(request.request_trajectory)
    assert len(h.pauses) == 1 and not h.traffic.budget_released()
    assert h.traffic.set_budget(110, 0) is None and not h.traffic.budget_released()  # still spent
    assert h.traffic.set_budget(1000, 0) is None and h.traffic.budget_released()
    assert h.traffic.set_budget(0, 0) is None and h.traffic.budget_released()  # cleared


# ----- the pace: when it starts, when it lets go, and the reset ----------------------------------------


async def paced_at_96_a_minute(h: Harness) -> None:
    """120 good answers at once, then 429s a hold did not stop: paced at 0.8 × 120 a minute (as above)."""
    await good_answers(h, 120)
    await h.advance(6.0)
    await refused(h, 5, retry_after_s=1.0)
    await h.advance(1.5)
    await refused(h, 5, retry_after_s=52.5)


async def test_429s_asking_for_a_long_wait_pace_at_once(tmp_path):
    h = Harness(tmp_path)
    await good_answers(h, 120)
    await h.advance(6.0)
    await refused(h, 3, retry_after_s=54.0)
    assert h.traffic.view().holds == 0
    # four of eight (120 good answers said the server refuses next to nothing at random), asking for
    # 5 s or more: a window of a minute is full, paced at once
    await refused(h, 1, retry_after_s=54.0)
    view = h.traffic.view()
    assert (view.holds, view.pace_per_minute) == (1, pytest.approx(0.8 * 120))


async def test_the_reset_forgets_the_pace_and_the_hold_and_releases_the_waiting(tmp_path):
    h = Harness(tmp_path)
    await paced_at_96_a_minute(h)
    view = h.traffic.view()
    assert view.pace_per_minute == pytest.approx(96) and view.held_because is not None
    tasks = [h.start()[1] for _ in range(5)]
    await h.advance(1.0)
    assert not any(t.done() for t in tasks)  # held for 52.5 s
    h.traffic.reset()
    await settle()
    assert all(t.done() for t in tasks)
    view = h.traffic.view()
    assert (view.pace_per_minute, view.held_s, view.held_because, view.holds) == (0.0, 0.0, None, 2)
    # learnt again only from what the server says next: one more 429 neither holds nor paces
    await refused(h, 1, retry_after_s=52.5)
    assert (h.traffic.view().pace_per_minute, h.traffic.view().held_because) == (0.0, None)


async def test_the_pace_lets_go_once_the_server_took_a_probe_above_it(tmp_path):
    h = Harness(tmp_path)
    await paced_at_96_a_minute(h)  # 2 a second read, paced at 1.6
    await h.advance(55.0)  # past the hold
    wrapped = h.wrap(replying(*[ok()] * 1000))
    waiting = [h.start() for _ in range(4)]  # four workers, answered at once: only the pace holds them
    seconds = 0.0
    while h.traffic.view().pace_per_minute and seconds < 60:
        await settle()
        for request, task in [started for started in waiting if started[1].done()]:
            waiting.remove((request, task))
            await wrapped(request.request_trajectory)
            waiting.append(h.start())
        await h.advance(0.05)
        seconds += 0.05
    # the curve is back at the limit after 10 s, then climbs above it; once the server took 1.2 times
    # the limit in a minute (144 answers), which a window full at that limit never admits, no pace
    assert 40 <= seconds <= 42
    await settle()
    assert all(task.done() for _, task in waiting)  # nothing paces them any more


async def test_pace_false_in_the_job_file_never_paces(tmp_path):
    h = Harness(tmp_path, limits={"pace": False})
    await paced_at_96_a_minute(h)
    view = h.traffic.view()
    assert view.pace_per_minute == 0.0 and view.held_because is not None  # the hold the server asked for stays


async def test_a_hold_shared_by_another_shard_holds_dispatch(tmp_path):
    # a cluster run: one shard's 429 hold reaches the others through the lease book
    h = Harness(tmp_path)
    h.traffic.hold_shared(4.0, "the server answers 429 (too many requests)")
    view = h.traffic.view()
    assert (view.held_s, view.held_because, view.holds) == (4.0, "the server answers 429 (too many requests)", 1)
    request, task = h.start()
    await h.advance(3.9)
    assert not task.done() and request.waiting_for == "the server's hold"
    await h.advance(2.0)  # the hold's end, and the spread of the release after it (a quarter of the hold)
    assert task.done()
    h.traffic.hold_shared(1.0, None)
    assert h.traffic.view().held_because == "another shard is held"

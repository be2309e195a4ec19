"""TokenFlowTask semantics: the seed's API and what the product adds to it."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tokenflow import (
    ActionContinue,
    ActionDone,
    ManualClock,
    TokenFlowCancelledEvent,
    TokenFlowContinueEvent,
    TokenFlowDoneEvent,
    TokenFlowRequestTrajectory,
    TokenFlowTask,
    TokenFlowUserExceptionEvent,
    UnexpectedUserException,
)


async def upper(trajectory: TokenFlowRequestTrajectory):
    await asyncio.sleep(0)
    return ActionDone(), str(trajectory.last().request_params).upper(), None


class Gate:
    """A handler whose calls block until released, so tests control what is in flight."""

    def __init__(self) -> None:
        self.started: list[object] = []
        self.release = asyncio.Event()

    def release_waiting(self) -> None:
        """Let the calls made so far return; later calls block until the next release."""
        self.release.set()
        self.release = asyncio.Event()

    async def __call__(self, trajectory):
        self.started.append(trajectory.last().request_params)
        await self.release.wait()
        return ActionDone(), trajectory.last().request_params


async def until(predicate, limit: int = 10_000) -> None:
    """Let the loop run until `predicate()` holds (bounded in iterations, no wall-clock sleep)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_seed_simple_task_returns_every_request_once_in_id_order():
    task = TokenFlowTask(request_fn=upper, request_params=[f"say {i}" for i in range(50)])
    task.run(n_workers=4)
    result = await task.wait_for_done()
    assert [r.id for r in result] == list(range(50))
    assert [r.request_trajectory.last().result for r in result] == [f"SAY {i}" for i in range(50)]
    assert all(r.request_trajectory.length() == 1 for r in result)


async def test_two_tuple_and_three_tuple_returns_both_work():
    async def handler(t):
        if t.last().request_params % 2:
            return ActionDone(), "odd"
        return ActionDone(), "even", {"payload": 1}

    task = TokenFlowTask(handler, list(range(4)))
    task.run(2)
    assert [r.request_trajectory.last().result for r in await task.wait_for_done()] == ["even", "odd", "even", "odd"]


async def test_no_params_returns_empty_list_at_once_even_without_run():
    task = TokenFlowTask(upper, [])
    assert await task.wait_for_done() == []
    assert task.state == "done"


async def test_continue_appends_an_attempt_with_new_params():
    async def handler(t):
        if t.length() < 3:
            return ActionContinue(t.last().request_params + "!"), f"try {t.length()}", None
        return ActionDone(), t.last().request_params, None

    task = TokenFlowTask(handler, ["a"])
    task.run(1)
    (request,) = await task.wait_for_done()
    elements = request.request_trajectory.trajectory
    assert [e.request_params for e in elements] == ["a", "a!", "a!!"]
    assert [e.result for e in elements] == ["try 1", "try 2", "a!!"]
    assert elements[0].action == ActionContinue("a!")
    assert elements[2].action == ActionDone()
    assert task.stats().retries == 2 and task.stats().attempts == 3


async def test_soft_stop_waits_for_in_flight_and_starts_nothing_new():
    gate = Gate()
    task = TokenFlowTask(gate, list(range(10)))
    task.run(3)
    await until(lambda: len(gate.started) == 3)
    stopping = asyncio.ensure_future(task.soft_stop())
    await asyncio.sleep(0)
    assert not stopping.done() and task.state == "stopping"
    gate.release.set()
    await stopping
    stats = task.stats()
    assert (stats.state, stats.done, stats.in_flight, stats.queued, stats.workers) == ("paused", 3, 0, 7, 0)
    assert gate.started == [0, 1, 2]
    task.run(2)
    result = await task.wait_for_done()
    assert [r.id for r in result] == list(range(10))
    assert sorted(gate.started) == list(range(10))


async def test_hard_stop_cancels_long_handlers_now_and_reruns_the_interrupted_attempt():
    calls: list[int] = []

    async def slow(t):
        calls.append(t.last().request_params)
        if len(calls) <= 2:
            await asyncio.sleep(600)  # would take ten minutes: hard_stop must not wait for it
        return ActionDone(), t.length()

    events = []
    task = TokenFlowTask(slow, [0, 1], event_callback=events.append)
    task.run(2)
    await until(lambda: len(calls) == 2)
    await asyncio.wait_for(task.hard_stop(), timeout=5)
    assert task.state == "paused"
    assert [type(e) for e in events] == [TokenFlowCancelledEvent, TokenFlowCancelledEvent]
    stats = task.stats()
    assert (stats.in_flight, stats.queued, stats.attempts, stats.done) == (0, 2, 0, 0)
    task.run(1)
    result = await task.wait_for_done()
    assert [r.request_trajectory.length() for r in result] == [1, 1]
    assert sorted(calls) == [0, 0, 1, 1]


async def test_many_stops_and_resumes_lose_and_duplicate_nothing():
    seen: list[int] = []

    async def handler(t):
        await asyncio.sleep(0)
        seen.append(t.last().request_params)
        return ActionDone(), t.last().request_params

    task = TokenFlowTask(handler, list(range(500)))
    for round_ in range(8):
        task.run(7)
        for _ in range(20):
            await asyncio.sleep(0)
        await (task.hard_stop() if round_ % 2 else task.soft_stop())
    task.run(5)
    result = await task.wait_for_done()
    assert [r.id for r in result] == list(range(500))
    assert [r.request_trajectory.last().result for r in result] == list(range(500))


async def test_handler_exception_becomes_a_failed_result_and_an_event():
    async def handler(t):
        if t.last().request_params == 1:
            raise ValueError("bad row")
        return ActionDone(), "ok", None

    events = []
    task = TokenFlowTask(handler, [0, 1, 2], event_callback=events.append)
    task.run(2)
    result = await task.wait_for_done()
    failed = result[1].request_trajectory.last().result
    assert isinstance(failed, UnexpectedUserException)
    assert failed.exception_str == "ValueError: bad row"
    assert 'raise ValueError("bad row")' in failed.traceback_str
    assert [r.request_trajectory.last().result for r in (result[0], result[2])] == ["ok", "ok"]
    exception_events = [e for e in events if isinstance(e, TokenFlowUserExceptionEvent)]
    assert [(e.request_id, e.exception_str) for e in exception_events] == [(1, "ValueError: bad row")]
    assert (task.stats().done, task.stats().failed) == (2, 1)


@pytest.mark.parametrize(
    "returned, shown",
    [
        ("just a string", "'just a string'"),
        ((ActionDone(),), "(ActionDone(),)"),
        (("done", "x"), "('done', 'x')"),
    ],
)
async def test_wrong_return_shape_fails_the_request_with_a_clear_message(returned, shown):
    async def handler(t):
        return returned

    task = TokenFlowTask(handler, [0])
    task.run(1)
    (request,) = await task.wait_for_done()
    result = request.request_trajectory.last().result
    assert isinstance(result, UnexpectedUserException)
    assert result.exception_str == (
        "handler must return (action, result) or (action, result, payload) with action "
        f"ActionDone() or ActionContinue(params); it returned {shown}"
    )


async def test_run_while_running_or_with_bad_worker_count_raises_and_changes_nothing():
    gate = Gate()
    task = TokenFlowTask(gate, list(range(5)))
    with pytest.raises(ValueError, match=r"n_workers must be a whole number ≥ 1, got 0"):
        task.run(0)
    assert task.state == "idle"
    task.run(2)
    with pytest.raises(RuntimeError, match="already running"):
        task.run(3)
    assert task.stats().workers == 2 and task.target_workers == 2
    gate.release.set()
    assert len(await task.wait_for_done()) == 5


def test_run_outside_an_event_loop_says_so():
    task = TokenFlowTask(upper, [1])
    with pytest.raises(RuntimeError, match="running event loop"):
        task.run(1)


async def test_set_workers_grows_at_once_and_shrinks_without_cancelling():
    gate = Gate()
    task = TokenFlowTask(gate, list(range(100)))
    task.run(2)
    await until(lambda: len(gate.started) == 2)
    task.set_workers(6)
    await until(lambda: len(gate.started) == 6)
    assert task.stats().workers == 6
    task.set_workers(1)
    assert task.stats().in_flight == 6  # nobody was cancelled
    gate.release_waiting()
    await until(lambda: task.stats().done == 6)
    await until(lambda: len(gate.started) == 7)
    assert task.stats().workers == 1 and task.stats().in_flight == 1
    gate.release.set()
    with pytest.raises(ValueError):
        task.set_workers(-1)
    await task.soft_stop()
    task.set_workers(4)  # paused: applies at the next run
    assert task.stats().workers == 0
    task.run()
    assert task.stats().workers == 4
    assert len(await task.wait_for_done()) == 100


async def test_stats_snapshot_uses_the_injected_clock():
    clock = ManualClock()
    gate = Gate()
    task = TokenFlowTask(gate, list(range(10)), clock=clock)
    task.run(4)
    await until(lambda: len(gate.started) == 4)
    clock.advance(2.0)
    gate.release_waiting()
    await until(lambda: task.stats().done == 4)
    await until(lambda: len(gate.started) == 8)
    stopping = asyncio.ensure_future(task.soft_stop())
    await until(lambda: task.state == "stopping")
    gate.release_waiting()
    await stopping
    stats = task.stats()
    assert stats.state == "paused"
    assert stats.total == 10 and stats.done + stats.in_flight + stats.queued == 10
    assert (stats.done, stats.in_flight, stats.queued, stats.attempts) == (8, 0, 2, 8)
    assert stats.elapsed_s == pytest.approx(2.0)
    # four attempts took 2 s of clock time, four took none
    assert stats.latency_p50_s < 1e-5
    assert stats.latency_p95_s == pytest.approx(2.0, rel=0.05)
    assert stats.latency_p99_s == pytest.approx(2.0, rel=0.05)
    assert stats.rate_avg == pytest.approx(4.0)
    clock.advance(100)  # paused time does not count
    assert task.stats().elapsed_s == pytest.approx(2.0)
    with pytest.raises(AttributeError):
        stats.done = 0  # type: ignore[misc]


async def test_rates_cover_their_windows():
    clock = ManualClock(start=0.0)

    async def handler(t):
        clock.advance(0.01)  # each request takes 10 ms of clock time
        return ActionDone(), None

    task = TokenFlowTask(handler, list(range(3000)), clock=clock)
    task.run(1)
    await task.wait_for_done()
    stats = task.stats()
    assert stats.elapsed_s == pytest.approx(30.0)
    assert stats.rate_1s == pytest.approx(100, rel=0.02)
    assert stats.rate_10s == pytest.approx(100, rel=0.02)
    assert stats.rate_60s == pytest.approx(100, rel=0.02)  # only 30 s ran
    assert stats.rate_avg == pytest.approx(100, rel=0.001)


async def test_sink_gets_each_request_once_and_the_task_keeps_none():
    got: list[int] = []
    task = TokenFlowTask(upper, requests=((i, i) for i in range(1000)), sink=lambda r: got.append(r.id))
    assert task.stats().total is None
    task.run(8)
    assert await task.wait_for_done() == []
    assert sorted(got) == list(range(1000)) and len(got) == 1000
    assert task.finished() == []
    assert task.stats().total == 1000


async def test_async_iterator_stream_yields_each_request_once():
    task = TokenFlowTask(upper, [f"x{i}" for i in range(200)])
    stream = task.stream()
    task.run(4)
    ids = [request.id async for request in stream]
    assert sorted(ids) == list(range(200))
    assert task.finished() == []


async def test_input_is_read_lazily():
    pulled = 0

    def source():
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i, i

    gate = Gate()
    task = TokenFlowTask(gate, requests=source())
    task.run(4)
    await until(lambda: len(gate.started) == 4)
    assert pulled == 4
    gate.release.set()
    await task.wait_for_done()
    assert pulled == 10_000


async def test_checkpoint_is_plain_data_and_resumes_to_the_same_results():
    async def handler(t):
        await asyncio.sleep(0)
        if t.length() < 2 and t.last().request_params % 3 == 0:
            return ActionContinue(t.last().request_params), f"retry {t.last().request_params}"
        return ActionDone(), t.last().request_params * 10

    params = list(range(300))
    reference = TokenFlowTask(handler, params)
    reference.run(4)
    expected = {
        r.id: [(e.request_params, e.result) for e in r.request_trajectory.trajectory]
        for r in await reference.wait_for_done()
    }

    first = TokenFlowTask(handler, params)
    first.run(4)
    for _ in range(40):
        await asyncio.sleep(0)
    await first.hard_stop()
    data = first.checkpoint()
    assert json.loads(json.dumps(data)) == data
    before = {r.id: r for r in first.finished()}
    assert 0 < len(before) < 300

    second = TokenFlowTask.from_checkpoint(data, handler, params)
    assert second.stats().done == len(before)
    second.run(3)
    after = {r.id: r for r in await second.wait_for_done()}
    assert not before.keys() & after.keys()
    union = {**before, **after}
    assert {
        i: [(e.request_params, e.result) for e in r.request_trajectory.trajectory] for i, r in union.items()
    } == expected
    assert second.stats().done == 300


async def test_checkpoint_taken_while_running_leaves_in_flight_attempts_to_run_again():
    gate = Gate()
    task = TokenFlowTask(gate, [0, 1, 2])
    task.run(2)
    await until(lambda: len(gate.started) == 2)
    data = task.checkpoint()
    assert [p["id"] for p in data["pending"]] == [0, 1]
    assert data["pending"][0]["trajectory"] == [
        {"request_params": 0, "result": None, "action": None, "started_at": None, "latency_s": None, "payload": None}
    ]
    assert data["consumed"] == 2
    resumed = TokenFlowTask.from_checkpoint(data, upper, [0, 1, 2])
    resumed.run(1)
    assert [r.request_trajectory.last().result for r in await resumed.wait_for_done()] == ["0", "1", "2"]
    gate.release.set()
    await task.wait_for_done()


async def test_checkpoint_counts_only_the_inputs_taken_not_added_or_restored_requests():
    gate = Gate()
    task = TokenFlowTask(gate, requests=((i, i) for i in range(5)))
    assert task.checkpoint()["consumed"] == 0
    task.add_requests([("a", "a"), ("b", "b")])
    task.run(3)  # the added requests are taken first
    await until(lambda: len(gate.started) == 3)
    assert [task.checkpoint()["consumed"] for _ in range(3)] == [1, 1, 1]
    data = task.checkpoint()
    resumed = TokenFlowTask.from_checkpoint(data, gate, requests=((i, i) for i in range(5)))
    resumed.add_requests([("c", "c")])
    assert resumed.checkpoint()["consumed"] == 1
    resumed.run(10)
    await until(lambda: len(gate.started) == 3 + 3 + 1 + 4)
    assert resumed.checkpoint()["consumed"] == 5
    await task.hard_stop()
    await resumed.hard_stop()


async def test_continue_with_delay_waits_on_the_clock():
    clock = ManualClock()
    attempts: list[float] = []

    async def handler(t):
        attempts.append(clock.monotonic())
        if t.length() == 1:
            return ActionContinue(t.last().request_params, delay_s=5.0), "busy"
        return ActionDone(), "ok"

    task = TokenFlowTask(handler, ["a"], clock=clock)
    task.run(1)
    await until(lambda: clock.sleeping == 1)
    assert task.stats().queued == 1 and len(attempts) == 1
    clock.advance(4.9)
    await asyncio.sleep(0)
    assert len(attempts) == 1
    clock.advance(0.2)
    (request,) = await task.wait_for_done()
    assert attempts == [1000.0, 1005.1]
    assert request.request_trajectory.last().result == "ok"


async def test_sync_callback_sees_events_with_frozen_trajectories():
    events = []

    async def handler(t):
        if t.length() == 1:
            return ActionContinue("again"), "first", "p1"
        return ActionDone(), "second", "p2"

    task = TokenFlowTask(handler, ["x"], event_callback=events.append)
    task.run(1)
    await task.wait_for_done()
    cont, done = events
    assert isinstance(cont, TokenFlowContinueEvent) and isinstance(done, TokenFlowDoneEvent)
    assert (cont.request_id, cont.continue_params, cont.result, cont.payload) == (0, "again", "first", "p1")
    assert cont.request_trajectory.length() == 1  # as it was when the event happened
    assert (done.result, done.payload, done.request_trajectory.length()) == ("second", "p2", 2)


async def test_async_callback_does_not_hold_up_workers_and_failures_are_only_logged(caplog):
    release = asyncio.Event()
    delivered: list[int] = []

    async def callback(event):
        await release.wait()
        if event.request_id == 3:
            raise RuntimeError("callback broke")
        delivered.append(event.request_id)

    task = TokenFlowTask(upper, list(range(10)), event_callback=callback)
    task.run(2)
    await until(lambda: task.stats().done == 10)  # workers finished while the callback was blocked
    assert delivered == []
    release.set()
    with caplog.at_level(logging.ERROR, logger="tokenflow"):
        await task.wait_for_done()
    assert delivered == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert "event callback raised on TokenFlowDoneEvent" in caplog.text


async def test_sync_callback_exception_is_logged_not_fatal(caplog):
    def callback(event):
        raise RuntimeError("boom")

    task = TokenFlowTask(upper, [1, 2], event_callback=callback)
    task.run(1)
    with caplog.at_level(logging.ERROR, logger="tokenflow"):
        assert len(await task.wait_for_done()) == 2
    assert caplog.text.count("event callback raised") == 2


async def test_add_requests_queues_more_work_and_in_flight_and_waiting_show_what_the_task_holds():
    gate = Gate()
    task = TokenFlowTask(gate, [0, 1])
    task.run(1)
    await until(lambda: len(gate.started) == 1)
    assert [r.id for r in task.in_flight()] == [0]
    assert task.add_requests([(10, 10), (11, 11)]) == 2
    assert [r.id for r in task.waiting()] == [10, 11]
    assert task.stats().total == 4
    gate.release.set()
    result = await task.wait_for_done()
    assert [r.id for r in result] == [0, 1, 10, 11]
    with pytest.raises(RuntimeError, match="the task is done"):
        task.add_requests([(12, 12)])


async def test_before_attempt_holds_each_attempt_back_until_it_returns():
    opened = asyncio.Event()
    seen: list[int] = []

    async def gate(request):
        seen.append(request.id)
        await opened.wait()

    task = TokenFlowTask(upper, ["a", "b"], before_attempt=gate)
    task.run(2)
    await until(lambda: seen == [0, 1])
    # held back at the gate: waiting, not in flight
    assert (task.stats().attempts, task.stats().in_flight, task.stats().waiting) == (0, 0, 2)
    assert [r.id for r in task.held_back()] == [0, 1] and task.in_flight() == []
    await task.hard_stop()  # a request held at the gate goes back to the queue
    assert task.stats().queued == 2
    opened.set()
    task.run(1)
    assert [r.request_trajectory.last().result for r in await task.wait_for_done()] == ["A", "B"]
    assert seen[:2] == [0, 1] and sorted(seen[2:]) == [0, 1]


async def test_rates_and_eta_count_running_time_only_so_a_pause_does_not_inflate_the_eta():
    clock = ManualClock(start=1000.0)

    async def one_second(t):
        await clock.sleep(1.0)
        return ActionDone(), None

    task = TokenFlowTask(one_second, list(range(1000)), clock=clock)
    task.run(10)

    async def tick(seconds: float = 1.0) -> None:
        """Move the clock on, then let the workers that wake take their next request."""
        clock.advance(seconds)
        await until(lambda: clock.sleeping == 10 or task.state == "paused")

    await until(lambda: clock.sleeping == 10)
    for _ in range(10):
        await tick()
    stopping = asyncio.ensure_future(task.soft_stop())
    await tick()  # the ten in flight finish; nothing new starts
    await stopping
    assert (task.stats().done, task.stats().elapsed_s) == (110, 11.0)
    clock.advance(100.0)  # paused
    task.run(10)
    await until(lambda: clock.sleeping == 10)
    await tick()
    stats = task.stats()
    # ten finished in each of the last ten running seconds; the window's span is 9.9 s at a whole tick
    assert (stats.done, stats.elapsed_s, stats.rate_10s) == (120, 12.0, 100 / 9.9)
    assert stats.rate_1s == 10 / 0.9
    assert stats.rate_avg == 10.0
    # over the last minute of running time (12 s so far): 88 s; counting the pause it was 880 s
    assert stats.eta_s == 880 / stats.rate_60s and stats.rate_60s == pytest.approx(10.0, rel=0.01)
    await task.hard_stop()


async def test_a_task_restored_from_a_checkpoint_rates_only_its_own_running_time():
    clock = ManualClock()

    async def one_second(t):
        await clock.sleep(1.0)
        return ActionDone(), None

    first = TokenFlowTask(one_second, list(range(100)), clock=clock)
    first.run(10)
    await until(lambda: clock.sleeping == 10)
    for _ in range(5):
        clock.advance(10.0)
        await until(lambda: clock.sleeping == 10)
    await first.hard_stop()
    data = first.checkpoint()
    assert (data["counters"]["done"], data["counters"]["elapsed_s"]) == (50, 50.0)

    second = TokenFlowTask.from_checkpoint(data, one_second, list(range(100)), clock=clock)
    second.run(10)
    await until(lambda: clock.sleeping == 10)
    clock.advance(1.0)
    await until(lambda: clock.sleeping == 10)
    stats = second.stats()
    assert (stats.done, stats.elapsed_s) == (60, 51.0)
    # ten in the one second since the restore, not ten over 51 s
    assert (stats.rate_avg, stats.rate_10s, stats.eta_s) == (10.0, 10.0, 4.0)
    await second.hard_stop()


async def test_hard_stop_requeues_the_cancelled_requests_in_input_order():
    gate = Gate()
    task = TokenFlowTask(gate, list(range(100)))
    task.run(40)
    await until(lambda: len(gate.started) == 40)
    gate.release_waiting()  # the first forty finish; each worker takes the next request
    await until(lambda: len(gate.started) == 80)
    task.add_requests([(100, 100)])  # taken after every request of the input read so far
    task.set_workers(41)
    await until(lambda: len(gate.started) == 81)
    await task.hard_stop()
    assert [r.id for r in task.waiting()] == list(range(40, 80)) + [100]
    gate.release.set()
    task.run(3)
    results = await task.wait_for_done()
    assert [r.id for r in results] == list(range(101))
    assert gate.started[81:121] == list(range(40, 80))  # run again first, in input order

"""The runner as the dashboard sees it: snapshot, rows, trajectories, failed groups and controls."""

from __future__ import annotations

import asyncio

import pytest
import run_helpers
from run_helpers import gated_job, read_records, until, write_input, write_job

from tokenflow_tui.engine import ManualClock
from tokenflow_tui.engine.trajectory import TokenFlowRequestTrajectoryElement, new_request
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.request_index import attempt_status, unfinished_row
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.store.results_file import WRITE_INTERVAL_S


@pytest.fixture
def gate():
    run_helpers.GATE.event = asyncio.Event()
    return run_helpers.GATE.event


async def test_rows_trajectories_and_failed_groups_follow_the_run(tmp_path, gate):
    lines = [
        {"id": "a", "prompt": "one"},
        {"id": "b", "prompt": "two", "fail": True},
        {"id": "c", "prompt": "three", "retry": True},
        {"id": "d", "prompt": "four"},
    ]
    runner = JobRunner(load_job(gated_job(tmp_path, lines, workers=2)), save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.row_count("in_flight") == 2)
    rows = runner.rows("all", 0, 4)
    assert [(r.index, r.id, r.state, r.attempts) for r in rows] == [
        (0, "a", "in_flight", 1),
        (1, "b", "failed", 1),
        (2, "c", "in_flight", 1),
        (3, 3, "queued", 0),
    ]
    snap = runner.snapshot()
    assert (snap.job_name, snap.state, snap.stats.total, snap.stats.in_flight, snap.stats.queued) == (
        "gated",
        "running",
        4,
        2,
        1,
    )
    gate.set()
    assert await asyncio.wait_for(running, 10) == 0
    assert runner.failed_groups() == {"handler_exception": [1]}
    assert runner.row_count("failed") == 1 and runner.row_count("retried") == 1
    (failed_row,) = runner.rows("failed", 0, 10)
    assert (failed_row.id, failed_row.state, failed_row.last_status) == ("b", "failed", "handler_exception")
    assert failed_row.preview == "RuntimeError: no luck for two"
    trajectory = runner.trajectory(2)
    assert [a["result"] for a in trajectory] == [{"retrying": True}, {"echo": "three"}]
    assert (
        trajectory
        == read_records(tmp_path / "out" / "results.jsonl")[
            [r["index"] for r in read_records(tmp_path / "out" / "results.jsonl")].index(2)
        ]["attempts"]
    )
    snap = runner.snapshot()
    assert (snap.stats.done, snap.stats.failed, snap.failed_by_kind) == (3, 1, {"handler_exception": 1})
    runner.close()


async def test_pause_resume_save_and_worker_changes(tmp_path, gate):
    lines = [{"prompt": f"p{i}"} for i in range(6)]
    runner = JobRunner(load_job(gated_job(tmp_path, lines, workers=2)), save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.row_count("in_flight") == 2)
    assert runner.set_workers(0) == "at 1 worker already: a job needs at least one"
    assert runner.set_workers(3) is None
    await until(lambda: runner.row_count("in_flight") == 3)
    pausing = asyncio.create_task(runner.pause())
    await until(lambda: runner.snapshot().state == "pausing")
    gate.set()
    await pausing
    snap = runner.snapshot()
    assert (snap.state, snap.stats.done, snap.stats.in_flight) == ("paused", 3, 0)
    report = await runner.save()
    assert report.results == 3 and report.path == str(tmp_path / "out" / "results.jsonl")
    assert "paused = true" in (tmp_path / "out" / "state.toml").read_text()
    await runner.resume()
    assert await asyncio.wait_for(running, 10) == 0
    assert len(read_records(tmp_path / "out" / "results.jsonl")) == 6
    runner.close()


async def test_stop_now_sends_in_flight_requests_back_and_shutdown_exits_130(tmp_path, gate):
    runner = JobRunner(load_job(gated_job(tmp_path, [{"prompt": f"p{i}"} for i in range(4)])), save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.row_count("in_flight") == 2)
    await runner.stop_now()
    snap = runner.snapshot()
    assert (snap.state, snap.stats.in_flight, snap.stats.queued) == ("paused", 0, 4)
    assert await runner.shutdown() == 130
    assert await asyncio.wait_for(running, 10) == 130
    assert (tmp_path / "out" / "results.jsonl").read_text() == ""


async def test_retry_queues_a_failed_request_again_while_the_job_runs(tmp_path, gate):
    lines = [{"prompt": "bad", "fail": True}] + [{"prompt": f"p{i}"} for i in range(3)]
    runner = JobRunner(load_job(gated_job(tmp_path, lines, workers=1)), save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.snapshot().stats.failed == 1 and runner.row_count("in_flight") == 1)
    assert runner.retry([0, 2]) == 1  # index 2 did not fail
    assert runner.failed_groups() == {}
    assert runner.snapshot().stats.failed == 0
    gate.set()
    assert await asyncio.wait_for(running, 10) == 0
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert [r["index"] for r in records].count(0) == 2
    assert runner.failed_groups() == {"handler_exception": [0]}
    runner.close()


async def test_an_unfinished_request_shows_its_finished_attempts(tmp_path, gate):
    runner = JobRunner(load_job(gated_job(tmp_path, [{"id": "r", "prompt": "x", "retry": True}])), save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.row_count("in_flight") == 1)
    assert runner.trajectory(0) == []  # the first attempt is still in flight
    gate.set()
    assert await asyncio.wait_for(running, 10) == 0
    assert [a["result"] for a in runner.trajectory(0)] == [{"retrying": True}, {"echo": "x"}]
    runner.close()


async def test_resume_during_a_pause_waits_for_it_then_runs(tmp_path, gate):
    runner = JobRunner(load_job(gated_job(tmp_path, [{"prompt": f"p{i}"} for i in range(4)])), save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.row_count("in_flight") == 2)
    pausing = asyncio.create_task(runner.pause())
    await until(lambda: runner.snapshot().state == "pausing")
    resuming = asyncio.create_task(runner.resume())
    await asyncio.sleep(0)
    assert not resuming.done()
    gate.set()
    await pausing
    await resuming
    assert await asyncio.wait_for(running, 10) == 0
    assert runner.snapshot().stats.done == 4
    runner.close()


async def test_cancelling_run_stops_the_workers_before_the_store_closes(tmp_path, gate):
    runner = JobRunner(load_job(gated_job(tmp_path, [{"prompt": f"p{i}"} for i in range(4)])), save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.row_count("in_flight") == 2)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert runner._task.state == "paused" and runner._task.stats().workers == 0
    gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert (tmp_path / "out" / "results.jsonl").read_text() == ""


async def test_finished_records_reach_the_file_every_write_interval_without_a_save(tmp_path, gate):
    clock = ManualClock()
    lines = [{"prompt": "bad", "fail": True}, {"prompt": "slow"}]
    runner = JobRunner(load_job(gated_job(tmp_path, lines, workers=2)), save_interval_s=3600, clock=clock)
    runner.open()
    running = asyncio.create_task(runner.run())
    results = tmp_path / "out" / "results.jsonl"
    await until(lambda: runner.snapshot().stats.failed == 1)
    clock.advance(WRITE_INTERVAL_S / 2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert results.read_bytes() == b""  # buffered until the interval has passed
    clock.advance(WRITE_INTERVAL_S / 2)
    await until(lambda: results.stat().st_size > 0)
    assert [(r["index"], r["status"]) for r in read_records(results)] == [(0, "failed")]
    assert not (tmp_path / "out" / "state.toml").exists()  # a plain write, not a save
    gate.set()
    assert await asyncio.wait_for(running, 10) == 0
    runner.close()


async def test_the_handler_file_is_imported_once_per_run(tmp_path):
    (tmp_path / "h.py").write_text(
        "import pathlib\n"
        "with open(pathlib.Path(__file__).with_name('imports.txt'), 'a') as out:\n"
        "    out.write('imported\\n')\n"
        "from tokenflow import ActionDone\n\n"
        "async def handler(trajectory):\n"
        "    return ActionDone(), 'ok'\n"
    )
    write_input(tmp_path / "in.jsonl", 3)
    job = write_job(
        tmp_path, {"job": {"name": "once", "input": "in.jsonl", "output": "out"}, "handler": {"path": "h.py:handler"}}
    )
    runner = JobRunner(load_job(job), save_interval_s=3600)
    runner.open()
    assert await asyncio.wait_for(runner.run(), 10) == 0
    runner.close()
    assert (tmp_path / "imports.txt").read_text() == "imported\n"
    assert len(read_records(tmp_path / "out" / "results.jsonl")) == 3


TIMEOUT = {"kind": "timeout", "message": "late", "status_code": None}
SLOW_DOWN = {"kind": "http_429", "message": "slow down", "status_code": 429}


@pytest.mark.parametrize(
    ("result", "stored", "status"),
    [
        ({"error": SLOW_DOWN}, {"error": SLOW_DOWN, "status_code": 429}, "429"),
        ({"error": TIMEOUT}, {"error": TIMEOUT, "status_code": None}, "timeout"),
        ({"text": "hi", "status_code": 200}, {"result": "hi", "status_code": 200}, "200"),
        ({"text": "hi", "status_code": None}, {"result": "hi", "status_code": None}, "ok"),
        ("a handler's own result", {"result": "a handler's own result"}, "ok"),
    ],
)
def test_a_retrying_row_shows_the_status_its_stored_attempt_will(result, stored, status):
    request = new_request(7, {"prompt": "x"})
    request.request_trajectory.mark_last_continue(result, {"prompt": "x"})
    request.request_trajectory.add(TokenFlowRequestTrajectoryElement({"prompt": "x"}))
    row = unfinished_row(7, request, None)
    assert (row.state, row.attempts, row.last_status) == ("retrying", 1, status)
    assert attempt_status(stored) == status  # the same helper reads both

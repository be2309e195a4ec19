"""The rows the dashboard pulls: an index of the requests the engine holds, a cache of finished rows."""

from __future__ import annotations

import asyncio
import json
import os
import time
from array import array

import pytest
import run_helpers
from run_helpers import gated_job, until, write_job

from tokenflow_tui.engine import ManualClock
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run import request_index as request_table
from tokenflow_tui.run.contract import RequestRow
from tokenflow_tui.run.request_index import RequestTable
from tokenflow_tui.run.runner import JobRunner

HOLDING_HANDLER = """
import run_helpers
from tokenflow import ActionDone


async def handler(trajectory):
    params = trajectory.last().request_params
    if params.get("hold"):
        await run_helpers.GATE.wait()
    return ActionDone(), {"echo": params["prompt"]}
"""

BENCH_FINISHED = int(os.environ.get("BENCH_ROWS_FINISHED", "100000"))
BENCH_IN_FLIGHT = 1000
VISIBLE = 50


def holding_job(directory, finished: int, held: int, workers: int):
    """`finished` requests that finish at once, then `held` ones that wait on GATE."""
    (directory / "handler.py").write_text(HOLDING_HANDLER)
    with (directory / "in.jsonl").open("w") as out:
        for i in range(finished + held):
            line = {"id": f"q{i}", "prompt": f"tell me about item {i}"}
            out.write(json.dumps({**line, "hold": True} if i >= finished else line) + "\n")
    return write_job(
        directory,
        {
            "job": {"name": "rows", "input": "in.jsonl", "output": "out"},
            "handler": {"path": "handler.py:handler"},
            "workers": {"count": workers},
        },
    )


@pytest.fixture
def gate():
    run_helpers.GATE.event = asyncio.Event()
    return run_helpers.GATE.event


def held_as_the_engine_says(runner: JobRunner) -> set[int]:
    task = runner._task
    return {r.id for r in task.waiting() + task.in_flight() + task.held_back()}


def held_as_the_index_says(runner: JobRunner) -> set[int]:
    return set(runner._held.requests)


def in_flight_rows(runner: JobRunner) -> list[int]:
    return [row.index for row in runner.rows("in_flight", 0, runner.row_count("in_flight"))]


async def test_the_index_of_held_requests_follows_the_engine(tmp_path, gate):
    lines = [{"id": "r", "prompt": "a", "retry": True}, {"id": "b", "prompt": "b", "fail": True}] + [
        {"prompt": f"p{i}"} for i in range(4)
    ]
    job = load_job(gated_job(tmp_path, lines, workers=3))
    runner = JobRunner(job, save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.snapshot().stats.failed == 1 and runner.row_count("in_flight") == 3)
    assert held_as_the_index_says(runner) == held_as_the_engine_says(runner) == {0, 2, 3}
    assert in_flight_rows(runner) == [0, 2, 3]
    await runner.stop_now()  # in flight → back to the queue
    assert held_as_the_index_says(runner) == held_as_the_engine_says(runner) == {0, 2, 3}
    assert in_flight_rows(runner) == []
    assert [r.state for r in runner.rows("all", 0, 4)] == ["queued", "failed", "queued", "queued"]
    assert runner.retry([1]) == 1  # queued again: held before its first attempt
    assert held_as_the_index_says(runner) == held_as_the_engine_says(runner) == {0, 1, 2, 3}
    assert runner.rows("all", 1, 2)[0].id == "b"
    await runner.resume()
    await until(lambda: runner.row_count("in_flight") == 3)
    assert held_as_the_index_says(runner) == held_as_the_engine_says(runner)
    gate.set()
    assert await asyncio.wait_for(running, 10) == 0
    assert held_as_the_index_says(runner) == set()
    runner.close()


async def test_a_request_held_at_the_rate_limit_is_waiting_not_in_flight(tmp_path, gate):
    path = gated_job(tmp_path, [{"prompt": f"p{i}"} for i in range(3)], workers=2)
    path.write_text(path.read_text() + "\n[limits]\nrequests_per_minute = 1\n")
    runner = JobRunner(load_job(path), save_interval_s=3600, clock=ManualClock())
    runner.open()
    running = asyncio.create_task(runner.run())
    # one request waits on the gate (in flight), the other on the rate limit (the clock never moves)
    await until(lambda: runner.snapshot().stats.waiting == 1)
    stats = runner.snapshot().stats
    assert (stats.in_flight, stats.waiting, stats.queued) == (1, 1, 1)
    assert in_flight_rows(runner) == [0]
    waiting = runner.rows("all", 1, 2)[0]
    assert (waiting.state, waiting.waiting_for, waiting.attempts) == ("waiting", "the rate limit", 0)
    assert runner.row_count("retried") == 0  # a first attempt waiting at the gate is not a retry
    assert held_as_the_index_says(runner) == held_as_the_engine_says(runner) == {0, 1}
    await runner.stop_now()
    assert held_as_the_index_says(runner) == held_as_the_engine_says(runner) == {0, 1}
    assert runner.snapshot().stats.waiting == 0 and runner.rows("all", 1, 2)[0].state == "queued"
    assert await runner.shutdown() == 130
    assert await asyncio.wait_for(running, 10) == 130


def test_finished_rows_read_from_disk_are_kept_until_their_request_is_queued_again(monkeypatch):
    monkeypatch.setattr(request_table, "_RECENT_PREVIEWS", 1)
    records = {
        10: {"id": "a", "status": "done", "result": "first", "attempts": [{"latency_ms": 5.0}]},
        20: {
            "id": "b",
            "status": "failed",
            "error": {"kind": "timeout", "message": "late"},
            "attempts": [{"error": {"kind": "timeout", "message": "late", "status_code": None}, "latency_ms": 9.0}],
        },
    }
    reads = []

    def read(offset: int) -> dict | None:
        reads.append(offset)
        return records.get(offset)

    table = RequestTable(3)
    table.note_finished(0, "a", None, 1, "ok", 5.0, "first", 10)
    table.note_finished(1, "b", "timeout", 1, "timeout", 9.0, "late", 20)  # row 0 leaves the recent ones
    table.note_finished(2, "c", None, 1, "ok", 1.0, "third", 30)
    first = RequestRow(0, "a", "done", 1, "ok", 5.0, "first")
    assert [table.finished_row(0, read) for _ in range(3)] == [first] * 3
    assert (
        table.finished_row(1, read)
        == table.finished_row(1, read)
        == RequestRow(1, "b", "failed", 1, "timeout", 9.0, "late")
    )
    assert reads == [10, 20]  # once each
    assert table.requeue(1) == "timeout"
    records[40] = {"id": "b", "status": "done", "result": "second", "attempts": [{"latency_ms": 2.0}]}
    table.note_finished(1, "b", None, 1, "ok", 2.0, "second", 40)
    table.note_finished(2, "c", None, 1, "ok", 1.0, "third", 30)  # row 1 leaves the recent ones again
    assert table.finished_row(1, read) == RequestRow(1, "b", "done", 1, "ok", 2.0, "second")
    assert reads == [10, 20, 40]


def test_a_row_that_cannot_be_read_is_not_kept():
    table = RequestTable(1)
    table.restore(bytearray([1]), array("q", [10]))
    reads = []

    def read(offset: int) -> None:
        reads.append(offset)  # the run is closed

    assert table.finished_row(0, read) == table.finished_row(0, read) == RequestRow(0, 0, "done", 0, "ok", None, "")
    assert reads == [10, 10]


@pytest.mark.benchmark
async def test_bench_one_rows_call_with_1000_in_flight_and_100k_finished(tmp_path):
    """What one `rows()` call of the dashboard's refresh costs (printed, not asserted).

    python -m pytest tests/run/test_runner_rows.py -m benchmark -s
    """
    run_helpers.GATE.event = asyncio.Event()
    runner = JobRunner(
        load_job(holding_job(tmp_path, BENCH_FINISHED, BENCH_IN_FLIGHT, BENCH_IN_FLIGHT)), save_interval_s=3600
    )
    runner.open()
    running = asyncio.create_task(runner.run())
    for _ in range(100_000):
        stats = runner.snapshot().stats
        if stats.done == BENCH_FINISHED and stats.in_flight == BENCH_IN_FLIGHT:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the run did not reach 100k finished and 1,000 in flight")
    windows = {
        "all, top (finished long ago)": ("all", 0),
        "all, where in-flight rows begin": ("all", BENCH_FINISHED - VISIBLE // 2),
        "in_flight, top": ("in_flight", 0),
    }
    calls = 200
    print()
    for name, (row_filter, start) in windows.items():
        runner.rows(row_filter, start, start + VISIBLE)  # the first draw may fill caches
        began = time.perf_counter()
        for _ in range(calls):
            rows = runner.rows(row_filter, start, start + VISIBLE)
        spent = (time.perf_counter() - began) / calls
        assert len(rows) == VISIBLE
        print(f"rows({row_filter!r}, {start}, {start + VISIBLE}) [{name}]: {spent * 1e6:,.0f} µs per call")
    run_helpers.GATE.event.set()
    assert await asyncio.wait_for(running, 120) == 0
    runner.close()

"""Search and sort of a run's requests (run/search.py, run/row_order.py) through the runner's contract."""

from __future__ import annotations

import asyncio
import json
from array import array

import pytest
import run_helpers
from run_helpers import until, write_job

from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.contract import SearchStatus
from tokenflow_tui.run.request_index import RequestTable
from tokenflow_tui.run.row_order import RowOrders
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.run.search import RequestSearch, next_match
from tokenflow_tui.run.slices import step

# answers hold "zebra" for every 7th item; every 5th takes 1 + i % 3 attempts; tokens grow with i % 11
HANDLER = """
import run_helpers
from tokenflow import ActionContinue, ActionDone


async def handler(trajectory):
    params = trajectory.last().request_params
    if params.get("hold"):
        await run_helpers.GATE.wait()
    item = params["item"]
    if item % 5 == 0 and trajectory.length() < 1 + item % 3:
        return ActionContinue(params), {"again": True}
    word = "Zebra" if item % 7 == 0 else "horse"
    tokens = {"prompt_tokens": 10, "completion_tokens": item % 11, "total_tokens": 10 + item % 11}
    return ActionDone(), {"text": f"an answer with a {word} for item {item}"}, {"usage": tokens}
"""
COUNT, FINISHED, WORKERS = 3_000, 2_500, 4


def job_path(directory):
    (directory / "handler.py").write_text(HANDLER)
    with (directory / "in.jsonl").open("w") as out:
        for i in range(COUNT):
            line = {"id": f"q{i}", "item": i, "prompt": f"tell me about item {i}"}
            out.write(json.dumps({**line, "hold": True} if i >= FINISHED else line) + "\n")
    return write_job(
        directory,
        {
            "job": {"name": "find", "input": "in.jsonl", "output": "out"},
            "handler": {"path": "handler.py:handler"},
            "workers": {"count": WORKERS},
        },
    )


@pytest.fixture
def gate():
    run_helpers.GATE.event = asyncio.Event()
    return run_helpers.GATE.event


async def searched(runner: JobRunner, query: str) -> tuple[SearchStatus, set[int]]:
    """Search, wait for the end, and every match's index in input order (found with find)."""
    started = runner.search(query)
    assert (started.query, started.done, started.total) == (query, False, COUNT)
    await until(lambda: runner.search_status().done)
    status = runner.search_status()
    found, position = [], -1
    for _ in range(COUNT + 1):
        position = runner.find(position, 1)
        if position is None or position in found:
            break
        found.append(position)
    assert found == sorted(found)
    return status, set(found)


def zebras(stop: int) -> set[int]:
    return {i for i in range(stop) if i % 7 == 0}


def attempts_of(i: int) -> int:
    return 1 + i % 3 if i % 5 == 0 else 1


async def test_search_and_sort_a_resumed_run_with_queued_and_held_requests(tmp_path, gate):
    job = load_job(job_path(tmp_path))
    first = JobRunner(job, save_interval_s=3600)
    first.open()
    running = asyncio.create_task(first.run())
    await until(lambda: first.snapshot().stats.done == FINISHED and first.row_count("in_flight") == WORKERS)
    await first.stop_now()  # the held ones go back to the queue
    assert await first.shutdown() == 130
    assert await asyncio.wait_for(running, 10) == 130

    runner = JobRunner(job, save_interval_s=3600)
    runner.open()  # 2,500 rows restored from disk, 500 queued in the input; nothing running
    status, found = await searched(runner, "ZEBRA")  # answers only, in any case
    assert found == zebras(FINISHED)
    assert status == SearchStatus("ZEBRA", COUNT, COUNT, len(zebras(FINISHED)), True)
    assert [row.index for row in runner.rows("all", 0, 30) if row.matched] == [0, 7, 14, 21, 28]
    # params: the prompt of finished requests and of queued ones alike
    _, found = await searched(runner, "item 25")
    assert found == {i for i in range(COUNT) if "item 25" in f"tell me about item {i}"}
    assert {2500, 2599, 25, 250, 259} <= found
    _, found = await searched(runner, "q2999")  # an id, queued
    assert found == {2999}

    # sorting learns the restored rows' keys from results.jsonl, then shows finished rows only
    assert runner.sort_status("attempts").ready is False
    assert runner.row_count("all", sort="attempts") == COUNT  # input order while the order is built
    await until(lambda: runner.sort_status("attempts").ready)
    assert runner.row_count("all", sort="attempts") == FINISHED
    rows = runner.rows("all", 0, FINISHED, sort="attempts")
    assert [r.index for r in rows] == sorted(range(FINISHED), key=lambda i: (-attempts_of(i), i))
    assert [r.attempts for r in rows[:3]] == [3, 3, 3]
    runner.rows("all", 0, 1, sort="tokens")
    await until(lambda: runner.sort_status("tokens").ready)
    expected = sorted(range(FINISHED), key=lambda i: (-(10 + i % 11), i))
    assert [r.index for r in runner.rows("all", 0, FINISHED, sort="tokens")] == expected
    # a match's position in the sorted list: the first zebra among the largest token counts
    first_zebra = next(p for p, i in enumerate(expected) if i % 7 == 0)
    runner.search("zebra")
    await until(lambda: runner.search_status().done)
    assert runner.find(-1, 1, "all", "tokens") == first_zebra
    assert runner.find(first_zebra, -1, "all", "tokens") == max(p for p, i in enumerate(expected) if i % 7 == 0)

    # running: the held requests are searched too, by their params
    running = asyncio.create_task(runner.run())
    await until(lambda: runner.row_count("in_flight") == WORKERS)
    held = {row.index for row in runner.rows("in_flight", 0, WORKERS)}
    _, found = await searched(runner, "about item 250")
    assert found == {250} | set(range(2500, 2510))
    assert held <= found | set(range(2510, COUNT))
    gate.set()
    assert await asyncio.wait_for(running, 30) == 0
    _, found = await searched(runner, "zebra")
    assert found == zebras(COUNT)
    runner.search("")
    assert runner.search_status() == SearchStatus() and runner.find(0, 1) is None
    runner.close()


def table_of(latencies: list[float | None]) -> RequestTable:
    table = RequestTable(len(latencies))
    for i, latency in enumerate(latencies):
        if latency is not None:
            table.note_finished(i, f"r{i}", None, 1, "ok", latency, "", i * 10, tokens=i)
    return table


def test_latency_order_is_of_finished_rows_slowest_first_and_rebuilt_when_stale(tmp_path):
    table = table_of([5.0, None, 120.5, 0.25, None, 120.5, 30.0])
    now = [0.0]
    orders = RowOrders(table, lambda: (tmp_path / "none.jsonl", 0), lambda: now[0])
    assert list(orders.order("latency") or ()) == [2, 5, 6, 0, 3]  # no loop running: built at once
    assert orders.status("latency").ready
    assert list(orders.view("latency", "failed", lambda: [3, 5, 1]) or ()) == [5, 3]
    table.note_finished(4, "r4", None, 1, "ok", 999.0, "", 40)
    assert list(orders.order("latency") or ()) == [2, 5, 6, 0, 3]  # kept until the rebuild is due
    now[0] = 2.0
    assert list(orders.order("latency") or ()) == [4, 2, 5, 6, 0, 3]
    with pytest.raises(ValueError, match="unknown sort key 'speed'"):
        orders.order("speed")


def test_a_sort_of_many_rows_is_merged_from_sorted_runs(monkeypatch, tmp_path):
    from tokenflow_tui.run import row_order

    monkeypatch.setattr(row_order, "_RUN", 64)
    monkeypatch.setattr(row_order, "_CHUNK", 16)
    latencies = [float((i * 7919) % 1000) for i in range(1_000)]
    table = table_of(latencies)
    build = row_order.SortBuild("latency", table, tmp_path / "none.jsonl", 0)
    slices = 0
    while not step(build.work, 0.0):
        slices += 1
    assert slices > 20  # a step with no time left does one unit of work
    assert list(build.order or ()) == sorted(range(1_000), key=lambda i: (-latencies[i], i))
    assert build.done == build.total


def test_next_match_wraps_around_in_both_directions():
    flags = bytearray(10)
    for i in (2, 5, 7):
        flags[i] = 1
    assert [next_match(flags, None, p, 1) for p in (-1, 2, 6, 7, 9)] == [2, 5, 7, 2, 2]
    assert [next_match(flags, None, p, -1) for p in (0, 2, 5, 8, 9)] == [7, 7, 2, 7, 7]
    view = array("q", [9, 7, 1, 5, 0])  # positions 1 (7) and 3 (5) match
    assert [next_match(flags, view, p, 1) for p in (-1, 1, 3)] == [1, 3, 1]
    assert [next_match(flags, view, p, -1) for p in (0, 1, 3, 4)] == [3, 3, 1, 3]
    assert next_match(bytearray(3), None, 0, 1) is None and next_match(bytearray(3), [0, 1], 0, -1) is None


def test_a_search_is_done_a_small_unit_at_a_time(tmp_path):
    """Each unit of a search is one record or one input line: a step with no time left does one."""
    table = RequestTable(300)
    results = tmp_path / "results.jsonl"
    with results.open("wb") as out:
        for i in range(200):
            table.note_finished(i, f"r{i}", None, 1, "ok", 1.0, "", out.tell())
            record = {"id": f"r{i}", "index": i, "status": "done", "result": f"text {i}", "attempts": []}
            out.write(json.dumps(record).encode() + b"\n")
    queued = [(i, f"r{i}", {"prompt": f"text {i}"}) for i in range(300)]
    search = RequestSearch(
        "text 1", table, list, results, results.stat().st_size, lambda skip: (q for q in queued if not skip(q[0]))
    )
    steps = 1
    while not step(search.work, 0.0):
        steps += 1
        assert search.scanned <= 300
    assert steps >= 300  # 200 records, 100 input lines
    expected = {i for i in range(300) if "text 1" in f"text {i}"}
    assert {i for i in range(300) if search.flags[i]} == expected
    assert search.status() == SearchStatus("text 1", 300, 300, len(expected), True)


def test_a_resumed_run_learns_its_sort_keys_from_the_last_record_of_each_request(tmp_path):
    records = [
        {"index": 0, "status": "failed", "attempts": [{"latency_ms": 1.0}] * 5, "usage": {"total_tokens": 900}},
        {"index": 1, "status": "done", "attempts": [{"latency_ms": 7.0}] * 2, "usage": {"total_tokens": 40}},
        {"index": 0, "status": "done", "attempts": [{"latency_ms": 3.0}], "usage": {"prompt_tokens": 4}},
        {"index": 2, "status": "done", "attempts": [{"latency_ms": 2.0}] * 3, "usage": None},
    ]
    results, offsets = tmp_path / "results.jsonl", []
    with results.open("wb") as out:
        for record in records:
            offsets.append(out.tell())
            out.write(json.dumps(record).encode() + b"\n")
    table = RequestTable(4)  # request 3 is queued
    table.restore(bytearray([1, 1, 1]), array("q", [offsets[2], offsets[1], offsets[3]]))
    orders = RowOrders(table, lambda: (results, results.stat().st_size), lambda: 0.0)
    assert table.keys_missing
    assert list(orders.order("attempts") or ()) == [2, 1, 0]
    assert list(orders.order("tokens") or ()) == [1, 0, 2]  # 40, 4 (prompt only), none
    assert list(orders.order("latency") or ()) == [1, 0, 2]
    assert not table.keys_missing

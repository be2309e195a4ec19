"""The event log: coalesced changes, events.jsonl in the run directory, earlier events on reopen, no secrets."""

from __future__ import annotations

import asyncio
import json

from run_helpers import simulated_job, until

from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.events import EventLog
from tokenflow_tui.run.runner import JobRunner


class Time:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_changes_coalesce_until_written(tmp_path):
    time = Time()
    log = EventLog(tmp_path, time)
    log.note_change("workers", "workers", "11", "12")
    time.now += 1
    log.note_change("workers", "workers", "12", "21")
    assert [e.text for e in log.events()] == ["workers: 11 → 21"]
    time.now += 30  # long after: a new event
    log.note_change("workers", "workers", "21", "20")
    log.note("pause", "paused")
    log.note_change("workers", "workers", "20", "30")  # another event came between: not coalesced
    assert [e.text for e in log.events()] == ["workers: 11 → 21", "workers: 21 → 20", "paused", "workers: 20 → 30"]
    log.flush()
    log.note_change("workers", "workers", "30", "31")  # the last one is written: this is a new one
    log.flush()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["text"]) for e in lines] == [
        ("workers", "workers: 11 → 21"),
        ("workers", "workers: 21 → 20"),
        ("pause", "paused"),
        ("workers", "workers: 20 → 30"),
        ("workers", "workers: 30 → 31"),
    ]
    assert lines[0]["at"] == 1001.0


def test_a_reopened_log_shows_the_earlier_events_and_skips_a_torn_line(tmp_path):
    first = EventLog(tmp_path, Time())
    first.note("pause", "paused: the cost budget is spent")
    first.flush()
    with (tmp_path / "events.jsonl").open("a") as file:
        file.write('{"at": 1, "kind": "sa')
    again = EventLog(tmp_path, Time())
    again.load()
    assert [(e.text, e.earlier) for e in again.events()] == [("paused: the cost budget is spent", True)]


def test_no_secret_reaches_the_log_or_its_file(tmp_path):
    log = EventLog(tmp_path, Time(), ["sk-secret-123"])
    log.note("pause", "paused: the server refused the key (401: Incorrect API key provided: sk-secret-123)")
    log.flush()
    assert "sk-secret" not in log.events()[0].text
    assert "sk-secret" not in (tmp_path / "events.jsonl").read_text()
    assert log.events()[0].text.endswith("provided: ***)")


async def test_a_run_logs_its_changes_pauses_and_saves_and_a_rerun_shows_them(tmp_path):
    job_path = simulated_job(tmp_path, 400, latency_ms=20, workers=4)
    runner = JobRunner(load_job(job_path), save_interval_s=3600, environ={})
    runner.open()
    running = asyncio.ensure_future(runner.run())
    try:
        await until(lambda: runner.snapshot().stats.finished > 0)
        for n in (5, 6, 14):
            assert runner.set_workers(n) is None
        assert runner.set_limits(600, 0) is None
        await runner.pause()
        await runner.resume()
        await runner.save()
    finally:
        await runner.shutdown()
        await asyncio.wait_for(running, 30)
    texts = [e.text for e in runner.snapshot().events]
    assert (
        texts[:6]
        == [
            "started: 400 requests",
            "workers: 4 → 14",
            "limits: 600 requests/min, 0 tokens/min (0: none)",
            "paused",
        ]
        + texts[4:6]
    )
    assert texts[4].startswith("saved ") and texts[5] == "resumed"
    written = [json.loads(line)["text"] for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert written == texts
    again = JobRunner(load_job(job_path), environ={})
    again.open()
    try:
        events = again.snapshot().events
    finally:
        again.close()
    assert [e.text for e in events if e.earlier] == texts
    assert events[-1].text.startswith("resumed: ") and not events[-1].earlier

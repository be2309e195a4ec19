"""Per-second history, tokens and error kinds of a run, and their round trip through state.toml."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import tomllib

import orjson
import pytest
import tomli_w
from run_helpers import simulated_job, until

from tokenflow_tui.cli.headless import final_line, progress_line
from tokenflow_tui.engine.stats import StatsSnapshot
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.contract import ChartPoint, RunSnapshot
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.run.statistics import LateRecords, RunStats
from tokenflow_tui.store.figures import RecordFigures, fold_records
from tokenflow_tui.store.report import build_report


def test_history_has_one_point_per_second_with_gaps_filled():
    stats = RunStats()
    stats.note_attempt(0.2, {"prompt_tokens": 3, "completion_tokens": 4}, None)
    stats.note_finished(0.2, None)
    stats.note_attempt(0.7, None, "http_429")
    stats.note_attempt(3.1, {"prompt_tokens": 1, "completion_tokens": 1}, None)
    stats.note_finished(3.1, "timeout")
    assert stats.history(4.5) == [
        ChartPoint(0, 1, 7, {"http_429": 1}),
        ChartPoint(1, 0, 0, {}),
        ChartPoint(2, 0, 0, {}),
        ChartPoint(3, 1, 2, {}),
    ]
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (4, 5, 9)
    assert stats.errors_by_kind == {"http_429": 1}
    assert stats.failed_by_kind == {"timeout": 1}
    stats.unfail("timeout")
    assert stats.failed_by_kind["timeout"] == 0


def test_state_round_trip_restores_the_chart_history():
    stats = RunStats()
    for t in range(5):
        stats.note_attempt(t + 0.5, {"prompt_tokens": t, "completion_tokens": 1}, "http_5xx" if t == 2 else None)
        stats.note_finished(t + 0.5, None)
    history = stats.history(5.0)
    text = tomli_w.dumps({"stats": stats.to_data()})
    restored = RunStats.from_data(tomllib.loads(text)["stats"])
    assert restored.history(5.0) == history
    restored.note_finished(6.2, None)
    assert restored.history(7.0)[-2:] == [ChartPoint(5, 0, 0, {}), ChartPoint(6, 1, 0, {})]
    assert restored.errors_by_kind == {"http_5xx": 1}


def test_streamed_tokens_count_in_the_second_they_arrive_and_usage_makes_up_the_rest():
    stats = RunStats()
    stats.note_streamed(0.4, 3)
    stats.note_streamed(1.5, 2)
    # the attempt ends in second 2: 5 tokens were seen arriving, its usage says 4 + 6
    stats.note_attempt(2.1, {"prompt_tokens": 4, "completion_tokens": 6}, None, ttft_ms=250.0, streamed_tokens=5)
    # a cut-off attempt has no usage: its streamed tokens stay where they arrived
    stats.note_streamed(2.5, 1)
    stats.note_attempt(2.6, None, "cut_off", ttft_ms=100.0, streamed_tokens=1)
    assert [point.tokens for point in stats.history(3.0)] == [3, 2, 5 + 1]
    assert (stats.prompt_tokens, stats.completion_tokens) == (4, 6)
    p50, p95, p99 = stats.ttft_percentiles()
    # the histogram's buckets are about 9 % wide: each percentile lands in the bucket of its sample
    assert 0.09 < p50 < 0.11 and 0.23 < p95 < 0.27 and p95 == p99
    restored = RunStats.from_data(tomllib.loads(tomli_w.dumps({"stats": stats.to_data()}))["stats"])
    assert restored.ttft_percentiles() == (p50, p95, p99)
    assert RunStats().ttft_percentiles() == (None, None, None)


def _snapshot(**stats) -> RunSnapshot:
    base = StatsSnapshot(
        "running", 5000, 1200, 34, 100, 3666, 1400, 166, 100, 100, 65.0, 300.0, 312.4, 290.0, 280.0, 0.25, 0.4, 0.5
    )
    return RunSnapshot(
        "demo",
        "runs/demo",
        "running",
        None,
        dataclasses.replace(base, **stats),
        1000,
        2000,
        6178.2,
        5000.0,
        {},
        {},
        [],
        None,
    )


def test_progress_and_final_lines():
    assert progress_line(_snapshot()) == (
        "demo: 1,234/5,000 (24.7%) · 34 failed · 100 in flight · 312 req/s · 6,178 tok/s · ETA 0:12"
    )
    assert final_line(_snapshot(done=4990, failed=10), 0) == (
        "demo: finished 5,000 requests (4,990 done, 10 failed) in 1:05; results in runs/demo/results.jsonl"
    )
    assert final_line(_snapshot(), 130) == (
        "demo: stopped with 1,234 of 5,000 requests finished; progress saved in runs/demo/results.jsonl; "
        "run the same command again to resume"
    )


def test_the_second_still_open_is_kept_in_the_checkpoint():
    stats = RunStats()
    stats.note_attempt(0.5, None, "timeout")
    stats.note_attempt(1.2, None, "timeout")  # second 1 is still open when saved
    restored = RunStats.from_data(tomllib.loads(tomli_w.dumps({"s": stats.to_data()}))["s"])
    assert sum(p.errors.get("timeout", 0) for p in restored.history(5.0)) == 2


# ----- the whole job's figures equal `tokenflow report`'s, after reopen, resume and a retry round -----


def _figures(snapshot: RunSnapshot) -> dict[str, object]:
    s = snapshot.stats
    return {
        "done": s.done,
        "failed": s.failed,
        "attempts": s.attempts,
        "retried": snapshot.retried,
        "tokens": snapshot.prompt_tokens + snapshot.completion_tokens,
        "failed_by_kind": dict(snapshot.failed_by_kind),
        "latency_ms": tuple(
            None if v is None else round(v * 1000, 6) for v in (s.latency_p50_s, s.latency_p95_s, s.latency_p99_s)
        ),
    }


def _report_figures(run_dir) -> dict[str, object]:
    r = build_report(run_dir)
    return {
        "done": r.done,
        "failed": r.failed,
        "attempts": r.attempts,
        "retried": r.retried,
        "tokens": r.total_tokens,
        "failed_by_kind": {g.kind: g.count for g in r.failures},
        "latency_ms": tuple(
            None if v is None else round(v, 6) for v in (r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms)
        ),
    }


def _faulty_job(tmp_path, count: int = 80, workers: int = 8):
    return simulated_job(tmp_path, count, fail={"500": 0.3}, latency_ms=5, workers=workers, max_attempts=2)


async def _reopened(job_path) -> RunSnapshot:
    runner = JobRunner(load_job(job_path))
    runner.open()
    try:
        return runner.snapshot()
    finally:
        runner.close()


async def test_a_finished_job_reopened_shows_the_figures_of_report(tmp_path):
    job_path = _faulty_job(tmp_path)
    runner = JobRunner(load_job(job_path), save_interval_s=3600)
    runner.open()
    assert await asyncio.wait_for(runner.run(), 60) == 0
    live = runner.snapshot()
    await runner.shutdown()
    expected = _report_figures(tmp_path / "out")
    assert expected["retried"] > 0 and expected["failed"] > 0  # the job is one where the figures can differ
    assert _figures(live) == expected
    reopened = await _reopened(job_path)
    assert _figures(reopened) == expected
    assert reopened.stats.rate_avg == pytest.approx(live.stats.rate_avg, rel=1e-6)


async def test_the_retried_filter_of_a_reopened_job_lists_the_requests_report_counts(tmp_path):
    job_path = _faulty_job(tmp_path)
    runner = JobRunner(load_job(job_path), save_interval_s=3600)
    runner.open()
    assert await asyncio.wait_for(runner.run(), 60) == 0
    await runner.shutdown()
    lines = (tmp_path / "out" / "results.jsonl").read_bytes().splitlines()
    # one record a request (no retry round): the retried are those whose record has two attempts or more
    expected = sorted(record["index"] for record in map(orjson.loads, lines) if len(record["attempts"]) >= 2)
    assert len(expected) == build_report(tmp_path / "out").retried > 0
    reopened = JobRunner(load_job(job_path))
    reopened.open()
    try:
        assert reopened.row_count("retried") == len(expected)
        assert [row.index for row in reopened.rows("retried", 0, len(expected))] == expected
    finally:
        reopened.close()


async def test_a_retry_round_adds_to_the_job_figures(tmp_path):
    job_path = _faulty_job(tmp_path)
    runner = JobRunner(load_job(job_path), save_interval_s=3600)
    runner.open()
    try:
        assert await asyncio.wait_for(runner.run(), 60) == 0
        first = runner.snapshot()
        failed = [i for group in runner.failed_groups().values() for i in group]
        assert runner.retry(failed) == len(failed) > 0
        # queued again and not sent yet: not retried (until their second attempt in this round)
        assert runner.row_count("retried") == runner.snapshot().retried == first.retried - len(failed)
        assert await asyncio.wait_for(runner.run(), 60) == 0
        after = runner.snapshot()
        assert runner.row_count("retried") == after.retried
    finally:
        await runner.shutdown()
    assert _figures(after) == _report_figures(tmp_path / "out")
    assert after.stats.attempts > first.stats.attempts
    assert after.stats.latency_p99_s is not None and after.stats.rate_avg > 0
    # the round's own average would be the few retried over their short running time: it is the job's
    assert after.stats.rate_avg == pytest.approx(build_report(tmp_path / "out").records / after.stats.elapsed_s)


async def test_a_resumed_job_keeps_its_history(tmp_path):
    job_path = _faulty_job(tmp_path, count=200, workers=4)
    runner = JobRunner(load_job(job_path), save_interval_s=3600)
    runner.open()
    running = asyncio.ensure_future(runner.run())
    await until(lambda: runner.snapshot().stats.finished >= 60, limit=4000)
    assert await runner.shutdown() == 130
    await asyncio.wait_for(running, 30)
    paused = await _reopened(job_path)
    assert _figures(paused) == _report_figures(tmp_path / "out")
    assert paused.retried > 0
    again = JobRunner(load_job(job_path), save_interval_s=3600)
    again.open()
    assert await asyncio.wait_for(again.run(), 60) == 0
    done = again.snapshot()
    await again.shutdown()
    assert _figures(done) == _report_figures(tmp_path / "out")
    assert done.retried >= paused.retried


async def test_records_written_after_the_last_save_are_counted_on_reopen(tmp_path):
    job_path = _faulty_job(tmp_path)
    runner = JobRunner(load_job(job_path), save_interval_s=3600)
    runner.open()
    assert await asyncio.wait_for(runner.run(), 60) == 0
    await runner.shutdown()
    # as if the last save had been made after the first 30 records only (a kill -9 after it)
    results = tmp_path / "out" / "results.jsonl"
    ends = list(itertools.accumulate(len(line) for line in results.read_bytes().splitlines(keepends=True)))
    early = RecordFigures()
    fold_records(early, results, ends[29], lambda index, offset: True)
    state_path = tmp_path / "out" / "state.toml"
    state = tomllib.loads(state_path.read_text())
    state["stats"]["figures"] = early.to_data()
    state_path.write_text(tomli_w.dumps(state))
    assert early.records == 30
    assert _figures(await _reopened(job_path)) == _report_figures(tmp_path / "out")


def test_tokenflow_version_prints_the_installed_version():
    from importlib.metadata import version

    from run_helpers import tokenflow

    run = tokenflow("--version", timeout=30)
    assert (run.returncode, run.stdout) == (0, f"tokenflow {version('tokenflow-tui')}\n")


def test_the_history_holds_each_seconds_latency_p50_and_p95_and_keeps_them_in_the_state():
    stats = RunStats()
    stats.note_finished(0.1, None, [100.0, 300.0])
    stats.note_finished(0.5, None, [200.0])
    for ms in range(1, 21):
        stats.note_finished(1.5, None, [float(ms)])
    stats.note_finished(3.2, None, [])
    points = stats.history(4.0)
    assert [(p.latency_p50_ms, p.latency_p95_ms) for p in points] == [
        (200.0, 300.0),
        (10.0, 19.0),
        (None, None),
        (None, None),
    ]
    restored = RunStats.from_data(tomllib.loads(tomli_w.dumps({"stats": stats.to_data()}))["stats"])
    assert restored.history(4.0) == points


async def test_the_trajectory_holds_the_body_sent_with_the_model_and_merged_params(tmp_path):
    job_path = simulated_job(tmp_path, 3, latency_ms=1, workers=1)
    runner = JobRunner(load_job(job_path), save_interval_s=3600)
    runner.open()
    try:
        assert await asyncio.wait_for(runner.run(), 30) == 0
        attempt = runner.trajectory(1)[-1]
    finally:
        await runner.shutdown()
    assert attempt["params"] == {"id": "q1", "prompt": "tell me about item 1"}
    assert attempt["body"] == {
        "model": load_job(job_path).endpoint.model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "tell me about item 1"}],
    }


async def test_the_trajectory_holds_the_body_sent_for_batch_lines_and_streamed_answers(tmp_path):
    messages = [{"role": "user", "content": "hi"}]
    lines = [
        {
            "custom_id": "c",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"messages": messages, "max_tokens": 2},
        },
        {"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}},
    ]
    (tmp_path / "batch.jsonl").write_text("".join(orjson.dumps(line).decode() + "\n" for line in lines))
    job_path = tmp_path / "job.toml"
    job_path.write_text(
        '[job]\nname = "b"\ninput = "batch.jsonl"\noutput = "out"\n'
        "[endpoint]\nsimulate = true\nstream = true\n[endpoint.simulator]\nlatency_ms = 1\n"
        "[request]\nparams = { max_tokens = 64, temperature = 0 }\n[workers]\ncount = 1\n"
    )
    job = load_job(job_path)
    runner = JobRunner(job, save_interval_s=3600)
    runner.open()
    try:
        assert await asyncio.wait_for(runner.run(), 30) == 0
        chat, vector = runner.trajectory(0)[-1], runner.trajectory(1)[-1]
    finally:
        await runner.shutdown()
    assert job.endpoint is not None
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    # the line's own keys win; the job's fill the rest, the stream's included
    assert chat["body"] == {
        "model": job.endpoint.model,
        "max_tokens": 2,
        "temperature": 0,
        **stream,
        "messages": messages,
    }
    # an embeddings body takes only the model of them
    assert vector["body"] == {"model": job.endpoint.model, "input": "x"}


def test_records_written_after_the_last_save_add_their_seconds_errors_and_running_time():
    saved = RunStats()
    saved.note_attempt(9.5, None, "http_5xx")
    saved.note_finished(9.5, None)
    stats = RunStats.from_data(saved.to_data())  # saved at running time 10.0, wall-clock 1,000.0
    late = LateRecords(saved_at=1000.0, elapsed_s=10.0)

    def attempt(started_at: float, latency_ms: float, kind: str | None = None) -> dict[str, object]:
        if kind is not None:
            return {"error": {"kind": kind}, "started_at": started_at, "latency_ms": latency_ms}
        usage = {"prompt_tokens": 7, "completion_tokens": 3}
        return {"usage": usage, "started_at": started_at, "latency_ms": latency_ms}

    # its first attempt ended before the save (counted then); the second at 1,000.5; the last at 1,002.25
    late.add({"attempts": [attempt(999.0, 200, "http_5xx"), attempt(1000.3, 200, "http_429"), attempt(1002.0, 250)]})
    late.add({"attempts": [attempt(998.0, 500)]})  # all before the save: nothing new
    stats.add_late(late)
    assert late.last_s == pytest.approx(12.25)
    assert stats.errors_by_kind == {"http_5xx": 1, "http_429": 1}
    points = {p.t: (p.finished, p.tokens, dict(p.errors)) for p in stats.history(13.0)}
    assert points[9] == (1, 0, {"http_5xx": 1})
    assert points[10] == (0, 0, {"http_429": 1})
    assert points[12] == (1, 10, {})

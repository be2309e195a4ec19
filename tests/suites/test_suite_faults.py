"""Faults from the simulator, one by one and mixed, through whole runs over loopback (DESIGN §6).

For each fault: what the trajectory records, that retries stop at max_attempts (and not before),
and that no attempt outlives its deadline. The runner and the simulator share the test's event loop.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from run_helpers import read_records, until, write_input, write_job

from tokenflow_tui.engine import ManualClock
from tokenflow_tui.job.model import TRANSPORTS
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.sim import Simulator, SimulatorConfig
from tokenflow_tui.sim.faults import HTML_BODY, MALFORMED_BODY

TIMEOUT_S = 0.3
DEADLINE_SLACK_MS = 150  # the event loop's own delay in noticing a deadline, on a busy machine
HUGE_BYTES = 20 * 1024 * 1024  # above the handler's 16 MiB cap


def job_for(
    tmp_path: Path, base_url: str, count: int, *, max_attempts: int = 3, workers: int = 8, transport: str = "aiohttp"
) -> Path:
    write_input(tmp_path / "prompts.jsonl", count)
    return write_job(
        tmp_path,
        {
            "job": {"name": "faults", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"base_url": base_url, "model": "m", "timeout_s": TIMEOUT_S, "transport": transport},
            "request": {"params": {"max_tokens": 32}},
            "workers": {"count": workers},
            "retry": {"max_attempts": max_attempts, "backoff_base_s": 0.01, "backoff_max_s": 0.02},
        },
    )


async def run_job(job: Path, limit_s: float = 30.0, clock: ManualClock | None = None) -> list[dict[str, Any]]:
    runner = JobRunner(load_job(job), save_interval_s=3600, clock=clock)
    runner.open()
    try:
        assert await asyncio.wait_for(runner.run(), limit_s) == 0
    finally:
        runner.close()
    return read_records(job.parent / "out" / "results.jsonl")


def error(kind: str, message: str, status_code: int | None, excerpt: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "message": message, "status_code": status_code, "excerpt": excerpt}


def server_error(status: int, message: str, kind: str) -> dict[str, Any]:
    body = f'{{"error":{{"message":"{message}","type":"{kind}","param":null,"code":null}}}}'
    return error("http_5xx", f"HTTP {status}: {message}", status, body)


RATE_LIMITED = (
    '{"error":{"message":"Rate limit reached for sim-1. Please try again later.","type":"requests",'
    '"param":null,"code":"rate_limit_exceeded"}}'
)
TIMED_OUT = error("timeout", f"no complete response within {TIMEOUT_S:g} s", None)
FAULTS = {
    "429": error("http_429", "HTTP 429: Rate limit reached for sim-1. Please try again later.", 429, RATE_LIMITED),
    "500": server_error(500, "The server had an error while processing your request.", "server_error"),
    "503": server_error(503, "The server is overloaded or not ready yet.", "server_error"),
    "reset": error("connection", "the connection failed: [Errno 104] Connection reset by peer", None),
    "stall": TIMED_OUT,
    "malformed": error("bad_response", "the response body is not valid JSON", 200, MALFORMED_BODY.decode()),
    "truncated": None,  # the transport's own words: checked below
    "drip": TIMED_OUT,
    "huge": error("bad_response", f"the response body is larger than the {16 * 1024 * 1024} bytes allowed", 200),
    "ctype": error(
        "bad_response", "the response is not JSON (content type 'text/html; charset=utf-8')", 200, HTML_BODY.decode()
    ),
}


@pytest.mark.parametrize("kind", list(FAULTS))
async def test_a_fault_on_every_attempt_is_recorded_and_retried_until_max_attempts(tmp_path, kind):
    # a 429's wait is cut to 20 ms here; the forms of Retry-After have their own test below
    config = SimulatorConfig(
        latency_ms=1, fail={kind: 1.0}, retry_after="none", retry_after_ms=20, huge_bytes=HUGE_BYTES, seed=1
    )
    async with Simulator(config) as sim:
        records = await run_job(job_for(tmp_path, sim.base_url, 4))
        assert sim.stats.outcomes[kind] == 12  # 4 requests × 3 attempts, not one more
    assert sorted(r["index"] for r in records) == [0, 1, 2, 3]
    for record in records:
        assert record["status"] == "failed" and record["result"] is None
        attempts = record["attempts"]
        assert len(attempts) == 3
        if kind == "truncated":
            assert record["error"]["kind"] == "bad_response" and record["error"]["status_code"] == 200
            assert record["error"]["message"].startswith("the response was cut short: ")
            cut = re.search(
                r"Not enough data to satisfy content length header \(received (\d+) of (\d+) bytes\)",
                record["error"]["message"],
            )
            assert cut is not None and int(cut[1]) == int(cut[2]) // 2  # the simulator sends half the body
            excerpt = record["error"]["excerpt"]  # the half that arrived, cut to the excerpt's length
            assert excerpt.startswith("{") and 0 < len(excerpt) <= min(200, int(cut[1]))
        else:
            assert record["error"] == FAULTS[kind]
        for attempt in attempts:
            if kind == "truncated":  # each answer's length differs with the digits of its id
                assert attempt["error"]["message"].startswith("the response was cut short: ")
            else:
                assert attempt["error"] == record["error"]
            assert attempt["params"] == {"id": record["id"], "prompt": f"tell me about item {record['index']}"}
            assert attempt["latency_ms"] <= TIMEOUT_S * 1000 + DEADLINE_SLACK_MS
        assert attempts[0]["started_at"] < attempts[1]["started_at"] < attempts[2]["started_at"]


def gap_s(record: dict[str, Any]) -> float:
    """Seconds between the end of the first attempt and the start of the second."""
    first, second = record["attempts"][:2]
    return second["started_at"] - (first["started_at"] + first["latency_ms"] / 1000)


@pytest.mark.parametrize(
    ("retry_after", "retry_after_ms", "low_s", "high_s"),
    [
        (1, None, 1.0, 1.5),  # Retry-After: 1
        ("none", 300, 0.3, 0.8),  # retry-after-ms: 300 (and no Retry-After)
        ("date", None, 1.0, 2.5),  # an HTTP date 2 s ahead, with one-second resolution
        ("none", None, 0.0, 0.3),  # no header: the jittered backoff (capped at 20 ms here)
    ],
    ids=["seconds", "milliseconds", "http-date", "no-header"],
)
async def test_each_form_of_retry_after_sets_the_wait_before_the_next_attempt(
    tmp_path, retry_after, retry_after_ms, low_s, high_s
):
    config = SimulatorConfig(
        latency_ms=1, fail={"429": 1.0}, retry_after=retry_after, retry_after_ms=retry_after_ms, seed=1
    )
    async with Simulator(config) as sim:
        (record,) = await run_job(job_for(tmp_path, sim.base_url, 1, max_attempts=2))
    assert [a["status_code"] for a in record["attempts"]] == [429, 429]
    assert low_s <= gap_s(record) <= high_s


async def test_an_absurd_retry_after_is_clamped_to_five_minutes(tmp_path):
    # Retry-After: 999999 s; the wait runs on an injected clock, the requests over real HTTP
    clock = ManualClock()
    config = SimulatorConfig(latency_ms=1, fail={"429": 1.0}, retry_after="absurd", seed=1)
    async with Simulator(config) as sim:
        runner = JobRunner(
            load_job(job_for(tmp_path, sim.base_url, 1, max_attempts=2)), clock=clock, save_interval_s=3600
        )
        runner.open()
        running = asyncio.create_task(runner.run())
        await until(lambda: runner.row_count("retried") == 1)
        assert sim.stats.outcomes["429"] == 1
        clock.advance(299.0)
        await asyncio.sleep(0.2)
        assert sim.stats.outcomes["429"] == 1  # still waiting at 299 s
        clock.advance(1.0)
        assert await asyncio.wait_for(running, 10) == 0
        runner.close()
        assert sim.stats.outcomes["429"] == 2
    (record,) = read_records(tmp_path / "out" / "results.jsonl")
    assert [a["error"]["kind"] for a in record["attempts"]] == ["http_429", "http_429"]


MIXED = {
    "429": 0.05,
    "500": 0.04,
    "503": 0.03,
    "reset": 0.03,
    "stall": 0.01,
    "malformed": 0.03,
    "truncated": 0.03,
    "drip": 0.01,
    "huge": 0.01,
    "ctype": 0.03,
}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_mixed_faults_end_with_one_final_record_each_and_no_attempt_past_its_deadline(tmp_path, transport):
    config = SimulatorConfig(
        latency_ms=5, jitter_ms=5, fail=MIXED, retry_after="none", retry_after_ms=20, huge_bytes=HUGE_BYTES, seed=4
    )
    async with Simulator(config) as sim:
        records = await run_job(job_for(tmp_path, sim.base_url, 400, max_attempts=4, workers=32, transport=transport))
        sent = sum(sim.stats.outcomes[kind] for kind in (*MIXED, "ok"))
    assert sorted(r["index"] for r in records) == list(range(400))
    kinds = Counter(a["error"]["kind"] for r in records for a in r["attempts"] if "error" in a)
    # every request sent is in a trajectory; on a loaded machine an attempt may also time out (or fail to
    # connect) before its request reached the server, so only those may be more than the server saw
    recorded = sum(len(r["attempts"]) for r in records)
    assert sent <= recorded <= sent + kinds["timeout"] + kinds["connection"]
    assert set(kinds) == {"http_429", "http_5xx", "connection", "timeout", "bad_response"}
    for record in records:
        attempts = record["attempts"]
        assert 1 <= len(attempts) <= 4
        assert all(a["latency_ms"] <= TIMEOUT_S * 1000 + DEADLINE_SLACK_MS for a in attempts)
        assert all("error" in a for a in attempts[:-1])
        if record["status"] == "done":
            assert attempts[-1]["status_code"] == 200
            assert record["result"] == f"Echo: tell me about item {record['index']}"
        else:
            assert len(attempts) == 4 and record["error"] == attempts[-1]["error"]

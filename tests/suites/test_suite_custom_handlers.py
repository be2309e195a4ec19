"""A custom handler through the command line (issue 11 §3): `[retry] max_attempts` bounds its trajectories,
and a handler that never awaits can neither freeze the process nor deafen it to SIGTERM. Real processes.
"""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from run_helpers import read_records, start_tokenflow, tokenflow, write_job

# never awaits: before the fix this spun one worker forever, with no progress line and no signal handled
SPINNING_HANDLER = """
from tokenflow import ActionContinue


async def handler(trajectory):
    return ActionContinue(trajectory.last().request_params), {"attempt": trajectory.length()}
"""

# says what it used and, at the end, that it failed, through its payload
DECLARING_HANDLER = """
from tokenflow import ActionContinue, ActionDone


async def handler(trajectory):
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    if trajectory.length() < 2:
        return ActionContinue(trajectory.last().request_params), {"try": 1}, {"usage": usage}
    if trajectory.last().request_params["n"] % 2:
        return ActionDone(), {"try": 2}, {"usage": usage, "failed": "the answer was empty twice"}
    return ActionDone(), {"try": 2}, {"usage": usage}
"""


# never answers some requests: n % 10 == 3 on its first attempt only, n % 10 == 7 never
HANGING_HANDLER = """
import asyncio

from tokenflow import ActionDone


async def handler(trajectory):
    n = trajectory.last().request_params["n"]
    if n % 10 == 7 or (n % 10 == 3 and trajectory.length() == 1):
        await asyncio.Event().wait()
    return ActionDone(), {"n": n}
"""


def handler_job(
    directory: Path,
    source: str,
    count: int,
    max_attempts: int,
    workers: int = 4,
    timeout_s: float | None = None,
) -> Path:
    (directory / "handler.py").write_text(source)
    with (directory / "in.jsonl").open("w") as out:
        for n in range(count):
            out.write(json.dumps({"n": n}) + "\n")
    handler: dict[str, Any] = {"path": "handler.py:handler"}
    if timeout_s is not None:
        handler["timeout_s"] = timeout_s
    return write_job(
        directory,
        {
            "job": {"name": "spin", "input": "in.jsonl", "output": "out"},
            "handler": handler,
            "workers": {"count": workers},
            "retry": {"max_attempts": max_attempts, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
        },
    )


def wait_for_line(child: subprocess.Popen[str], text: str, limit_s: float = 60.0) -> str:
    """Read the child's stderr until a line holds `text` (at most `limit_s`, then fail)."""
    assert child.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(child.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + limit_s
    while (left := deadline - time.monotonic()) > 0:
        if selector.select(left):
            line = child.stderr.readline()
            if text in line:
                return line
            if not line:
                break
    child.kill()
    raise AssertionError(f"no line with {text!r} within {limit_s} s")


def test_a_handler_that_never_awaits_is_bounded_by_max_attempts_and_the_run_ends(tmp_path):
    job = handler_job(tmp_path, SPINNING_HANDLER, count=200, max_attempts=3)
    done = tokenflow("run", str(job), "--headless", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "spin: finished 200 requests (0 done, 200 failed)" in done.stderr
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert len(records) == 200
    assert {r["status"] for r in records} == {"failed"}
    assert {r["error"]["kind"] for r in records} == {"too_many_attempts"}
    assert records[0]["error"]["message"] == "gave up after 3 attempts (retry.max_attempts)"
    # the handler's last result is kept
    assert {tuple(a["result"]["attempt"] for a in r["attempts"]) for r in records} == {(1, 2, 3)}
    report = tokenflow("report", str(tmp_path / "out"))
    assert "too_many_attempts" in report.stdout


def test_sigterm_stops_a_handler_that_never_awaits_and_the_progress_is_saved(tmp_path):
    # 100 attempts per request over 200,000 requests: minutes of work, so the signal comes mid-run
    job = handler_job(tmp_path, SPINNING_HANDLER, count=200_000, max_attempts=100)
    child = start_tokenflow("run", str(job), "--headless")
    wait_for_line(child, " in flight ")  # the loop goes round: the progress line is printed
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "progress saved" in err
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert 0 < len(records) < 200_000
    assert {len(r["attempts"]) for r in records} == {100}


def test_a_handler_says_its_tokens_and_its_failures_through_the_payload(tmp_path):
    job = handler_job(tmp_path, DECLARING_HANDLER, count=10, max_attempts=5)
    done = tokenflow("run", str(job), "--headless", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "(5 done, 5 failed)" in done.stderr
    records = {r["index"]: r for r in read_records(tmp_path / "out" / "results.jsonl")}
    failed = records[1]
    assert (failed["status"], failed["error"]) == (
        "failed",
        {"kind": "handler_failed", "message": "the answer was empty twice"},
    )
    assert failed["usage"] == {"prompt_tokens": 6, "completion_tokens": 8, "total_tokens": 14}
    assert (records[0]["status"], records[0]["result"], records[0]["usage"]["total_tokens"]) == ("done", {"try": 2}, 14)
    report = tokenflow("report", str(tmp_path / "out"))
    assert "handler_failed" in report.stdout
    assert "140" in report.stdout  # the tokens of every attempt: 10 requests × 2 attempts × 7


def test_a_handler_that_never_answers_is_cut_at_its_timeout_retried_and_the_run_ends(tmp_path):
    # as many hanging requests as workers: without the deadline every worker would hang for good
    job = handler_job(tmp_path, HANGING_HANDLER, count=40, max_attempts=3, workers=4, timeout_s=0.2)
    done = tokenflow("run", str(job), "--headless", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "spin: finished 40 requests (36 done, 4 failed)" in done.stderr
    records = {r["index"]: r for r in read_records(tmp_path / "out" / "results.jsonl")}
    timeout = {"kind": "timeout", "message": "the handler did not answer within 0.2 s ([handler] timeout_s)"}
    # hung once: the second attempt answers
    assert [a.get("error") for a in records[3]["attempts"]] == [timeout, None]
    assert (records[3]["status"], records[3]["result"]) == ("done", {"n": 3})
    # hung every time: failed with the timeout after max_attempts
    assert [a.get("error") for a in records[7]["attempts"]] == [timeout] * 3
    assert (records[7]["status"], records[7]["error"]) == ("failed", timeout)
    assert [len(records[n]["attempts"]) for n in (0, 1, 2, 4)] == [1, 1, 1, 1]
    report = tokenflow("report", str(tmp_path / "out"))
    assert "timeout" in report.stdout and "4 failed" in report.stdout

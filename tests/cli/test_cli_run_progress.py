"""`tokenflow run` around earlier progress, in child processes on real files (issues 18 and 11): --restart takes
the lock and checks everything first, a missing results.jsonl is refused, --accept-changes, --fail-on-failed,
signals during opening, retry rounds, and `tokenflow repair`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from run_helpers import read_records, tokenflow, write_job

HANDLER = """
import asyncio
import os
from tokenflow import ActionDone


async def handler(trajectory):
    params = trajectory.last().request_params
    if os.environ.get("TF_TEST_BLOCK"):
        print("called", flush=True)  # the run holds its output now
        await asyncio.Event().wait()
    if params.get("fail"):
        raise ValueError("refused " + params["prompt"])
    return ActionDone(), {"echo": params["prompt"]}
"""
# a handler that stops the run while it is being imported, inside `JobRunner.open()`
BLOCKING_IMPORT = """
import sys
import time

print("importing", flush=True)
time.sleep(120)
"""


def handler_job(folder: Path, count: int, failing_every: int = 0) -> Path:
    """`count` lines p0…; with `failing_every`, every such line raises in the handler."""
    (folder / "h.py").write_text(HANDLER)
    with (folder / "in.jsonl").open("w") as out:
        for i in range(count):
            line = {"id": f"p{i}", "prompt": f"item {i}"}
            if failing_every and i % failing_every == 0:
                line["fail"] = True
            out.write(json.dumps(line) + "\n")
    return write_job(
        folder,
        {
            "job": {"name": "h", "input": "in.jsonl", "output": "out"},
            "handler": {"path": "h.py:handler"},
            "workers": {"count": 4},
        },
    )


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    import os

    return subprocess.Popen(
        [sys.executable, "-m", "tokenflow_tui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )


def stop_blocked(child: subprocess.Popen[str]) -> str:
    """Stop a run whose handler never returns: SIGTERM (pause), then SIGTERM again (stop now); its stderr."""
    child.send_signal(signal.SIGTERM)
    lines = []
    for line in child.stderr:  # bounded by the test's timeout: the child answers the first signal at once
        lines.append(line)
        if line.startswith("stopping: "):
            break
    child.send_signal(signal.SIGTERM)
    _, rest = child.communicate(timeout=60)
    return "".join(lines) + rest


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def state_of(output: Path) -> dict:
    return tomllib.loads((output / "state.toml").read_text())


# ----- --restart ------------------------------------------------------------------------------


def test_restart_on_an_output_in_use_touches_nothing(tmp_path):
    job = handler_job(tmp_path, 12, failing_every=3)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    out = tmp_path / "out"
    before = {name: data for name, data in files_of(out).items() if name != ".lock"}
    running = start("run", str(job), "--headless", "--retry-failed", env={"TF_TEST_BLOCK": "1"})
    try:
        assert running.stdout.readline() == "called\n"  # it holds the lock now
        restart = tokenflow("run", str(job), "--headless", "--restart")
        assert restart.returncode == 2
        assert restart.stderr == f"tokenflow run: {out} is in use by another tokenflow run (pid {running.pid}).\n"
        assert {name: data for name, data in files_of(out).items() if name != ".lock"} == before
        assert not list(out.glob("previous-*"))
    finally:
        stderr = stop_blocked(running)
    assert running.returncode == 130, stderr


@pytest.mark.parametrize("broken", ["input", "handler"])
def test_restart_with_a_bad_input_or_handler_moves_nothing(tmp_path, broken):
    job = handler_job(tmp_path, 5)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    out = tmp_path / "out"
    before = files_of(out)
    if broken == "input":
        with (tmp_path / "in.jsonl").open("a") as more:
            more.write('{"id": "p9", "prompt": \n')
        expected = f"{tmp_path}/in.jsonl:6:1: invalid JSON: unexpected end of data\n"
    else:
        (tmp_path / "h.py").write_text("async def handler(trajectory:\n")
        expected = f"{tmp_path}/h.py:1:18: cannot import the handler: SyntaxError: '(' was never closed\n"
    result = tokenflow("run", str(job), "--headless", "--restart")
    assert (result.returncode, result.stderr) == (2, expected)
    assert files_of(out) == before  # nothing moved aside, nothing written


def test_restart_moves_the_earlier_progress_aside_and_runs_again(tmp_path):
    job = handler_job(tmp_path, 5)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    first = (tmp_path / "out" / "results.jsonl").read_bytes()
    again = tokenflow("run", str(job), "--headless", "--restart")
    assert again.returncode == 0, again.stderr
    [backup] = (tmp_path / "out").glob("previous-*")
    assert again.stderr.startswith(f"earlier progress moved to {backup}\n")
    assert (backup / "results.jsonl").read_bytes() == first
    assert sorted(r["id"] for r in read_records(tmp_path / "out" / "results.jsonl")) == [f"p{i}" for i in range(5)]


# ----- a missing results.jsonl ------------------------------------------------------------


def test_a_missing_results_file_that_state_claims_is_refused(tmp_path):
    job = handler_job(tmp_path, 5)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    out = tmp_path / "out"
    saved = state_of(out)["results"]
    (out / "results.jsonl").unlink()
    result = tokenflow("run", str(job), "--headless")
    assert result.returncode == 2
    assert result.stderr == (
        f"tokenflow run: {out}/results.jsonl is missing, but {out}/state.toml says it held 5 records "
        f"({saved['size']:,} bytes); put the file back to resume, or rerun with --restart to start over "
        "(the state is moved aside, not deleted)\n"
    )
    assert not (out / "results.jsonl").exists()  # nothing was sent again
    assert tokenflow("run", str(job), "--headless", "--restart").returncode == 0


# ----- --accept-changes ------------------------------------------------------------------------


def test_accept_changes_resumes_after_a_handler_fix_and_records_it(tmp_path):
    job = handler_job(tmp_path, 9, failing_every=3)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    out = tmp_path / "out"
    first_version = state_of(out)["job_version"]
    (tmp_path / "h.py").write_text(HANDLER.replace('if params.get("fail"):', "if False:"))  # the fix
    refused = tokenflow("run", str(job), "--headless", "--retry-failed")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"tokenflow run: {out} holds progress that no longer matches the job: the handler file changed since it "
        "was saved; rerun with --accept-changes to resume anyway, or with --restart to discard it\n"
    )
    accepted = tokenflow("run", str(job), "--headless", "--retry-failed", "--accept-changes")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stderr.startswith(
        "resuming despite changes to the handler file\nqueued again 3 requests whose last record failed\n"
    )
    state = state_of(out)
    [change] = state["changes"]
    assert (change["parts"], change["from_version"], change["to_version"]) == (
        "the handler file",
        first_version,
        state["job_version"],
    )
    assert first_version != state["job_version"]
    records = read_records(out / "results.jsonl")
    versions = [(r["id"], r["status"], r["job_version"]) for r in records]
    first_run = sorted((f"p{i}", "failed" if i % 3 == 0 else "done", first_version) for i in range(9))
    assert sorted(versions[:9]) == first_run
    assert sorted(versions[9:]) == [(f"p{i}", "done", state["job_version"]) for i in (0, 3, 6)]
    assert tokenflow("run", str(job), "--headless").returncode == 0  # the accepted version is the job's now


def test_accept_changes_never_lets_a_changed_input_through(tmp_path):
    job = handler_job(tmp_path, 4)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    (tmp_path / "h.py").write_text(HANDLER + "# fixed\n")
    with (tmp_path / "in.jsonl").open("a") as more:
        more.write('{"id": "p9", "prompt": "more"}\n')
    result = tokenflow("run", str(job), "--headless", "--accept-changes")
    assert result.returncode == 2
    assert result.stderr == (
        f"tokenflow run: {tmp_path / 'out'} holds progress that no longer matches the job: the input and the "
        "handler file changed since it was saved; --accept-changes never lets the input through: rerun with "
        "--restart to discard it\n"
    )
    assert state_of(tmp_path / "out")["changes"] == []


# ----- --fail-on-failed -----------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "code"), [((), 0), (("--fail-on-failed",), 3)])
def test_fail_on_failed_exits_3_when_some_final_records_failed(tmp_path, flag, code):
    job = handler_job(tmp_path, 6, failing_every=3)
    result = tokenflow("run", str(job), "--headless", *flag)
    assert result.returncode == code, result.stderr
    assert result.stderr.endswith(
        f"h: finished 6 requests (4 done, 2 failed) in 0:00; results in {tmp_path}/out/results.jsonl\n"
    )


def test_fail_on_failed_exits_0_when_nothing_failed(tmp_path):
    job = handler_job(tmp_path, 4)
    assert tokenflow("run", str(job), "--headless", "--fail-on-failed").returncode == 0


# ----- signals before the run starts ---------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_run_opens_exits_130_without_a_traceback(tmp_path, sig):
    job = handler_job(tmp_path, 3)
    (tmp_path / "h.py").write_text(BLOCKING_IMPORT + HANDLER)
    child = start("run", str(job), "--headless")
    try:
        assert child.stdout.readline() == "importing\n"  # inside JobRunner.open(), loading the handler
        child.send_signal(sig)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130
    assert stderr == "tokenflow run: interrupted; progress saved\n"
    (tmp_path / "h.py").write_text(HANDLER)  # the output was let go: the next run takes it
    assert tokenflow("run", str(job), "--headless").returncode == 0


# ----- retry rounds --------------------------------------------------------------------------------


def test_a_retry_round_that_fails_again_the_same_way_is_no_storm(tmp_path):
    job = handler_job(tmp_path, 100, failing_every=4)  # 25 % fail: no storm in the first run
    first = tokenflow("run", str(job), "--headless")
    assert first.returncode == 0, first.stderr
    again = tokenflow("run", str(job), "--headless", "--retry-failed")
    # all 25 fail again, as before: the storm detector (more than half of 20+) would pause the job
    assert again.returncode == 0, again.stderr
    assert "paused" not in again.stderr
    assert again.stderr.endswith(
        f"h: finished 100 requests (75 done, 25 failed) in 0:00; results in {tmp_path}/out/results.jsonl\n"
        "retry round: 25 failed requests were queued again; 25 requests end failed now\n"
    )
    assert len(read_records(tmp_path / "out" / "results.jsonl")) == 125


# ----- tokenflow repair ------------------------------------------------------------------------------


def test_a_damaged_middle_line_is_refused_then_repaired_and_its_request_runs_again(tmp_path):
    job = handler_job(tmp_path, 8)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    out = tmp_path / "out"
    results = out / "results.jsonl"
    lines = results.read_bytes().split(b"\n")
    damaged_ids = [json.loads(lines[i])["id"] for i in (2, 5)]
    lines[2] = lines[2][:20]
    lines[5] = b"garbage"
    results.write_bytes(b"\n".join(lines))
    refused = tokenflow("run", str(job), "--headless")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"tokenflow run: {results}:3: damaged record (invalid JSON at column 21: unexpected end of data); the file "
        f"was not changed. `tokenflow repair {out}` moves the damaged lines to results.damaged.jsonl (nothing is "
        "deleted) and their requests run again.\n"
    )
    repair = tokenflow("repair", str(out))
    assert repair.returncode == 0, repair.stderr
    assert repair.stdout == (
        f"{results}:3: moved to results.damaged.jsonl (invalid JSON at column 21: unexpected end of data)\n"
        f"{results}:6: moved to results.damaged.jsonl (invalid JSON at column 1: unexpected character, expected "
        "a JSON value)\n"
        f"moved 2 damaged lines to {out}/results.damaged.jsonl; 6 records stay. The next `tokenflow run` sends "
        "again the requests that have no record now.\n"
    )
    assert (out / "results.damaged.jsonl").read_bytes() == lines[2] + b"\n" + lines[5] + b"\n"
    rerun = tokenflow("run", str(job), "--headless")
    assert rerun.returncode == 0, rerun.stderr
    records = read_records(results)
    assert len(records) == 8 and sorted(r["id"] for r in records) == [f"p{i}" for i in range(8)]
    assert sorted(r["id"] for r in records[6:]) == sorted(damaged_ids)
    again = tokenflow("repair", str(out))
    assert again.stdout == f"{results}: nothing to repair; its 8 lines are all records\n"


def test_repair_refuses_a_folder_without_results_and_one_in_use(tmp_path):
    missing = tokenflow("repair", str(tmp_path / "nowhere"))
    assert (missing.returncode, missing.stderr) == (
        2,
        f"tokenflow repair: {tmp_path}/nowhere/results.jsonl: no such file; is {tmp_path}/nowhere the output "
        "folder of a run?\n",
    )
    job = handler_job(tmp_path, 4, failing_every=2)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    running = start("run", str(job), "--headless", "--retry-failed", env={"TF_TEST_BLOCK": "1"})
    try:
        assert running.stdout.readline() == "called\n"
        busy = tokenflow("repair", str(tmp_path / "out"))
        assert (busy.returncode, busy.stderr) == (
            2,
            f"tokenflow repair: {tmp_path / 'out'} is in use by another tokenflow run (pid {running.pid}).\n",
        )
    finally:
        stop_blocked(running)

"""`tokenflow run JOB --detach`: the run goes on in the background, its log in OUTPUT/run.log."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from run_helpers import simulated_job, tokenflow

from tokenflow_tui.run.control_client import NotRunning, RemoteControl, find_socket


def test_detach_starts_the_run_in_the_background_and_says_how_to_attach(tmp_path: Path) -> None:
    job = simulated_job(tmp_path, 5_000, latency_ms=100, workers=4)
    out = tmp_path / "out"
    started = tokenflow("run", str(job), "--detach", timeout=60)
    assert started.returncode == 0, started.stderr
    first, attach, watch = started.stdout.splitlines()
    assert first.startswith("running in the background (pid ") and first.endswith(f"); log in {out}/run.log")
    pid = int(first.split("pid ")[1].split(")")[0])
    try:
        assert attach == f"  tokenflow attach {out}   # the dashboard: q detaches, Q ends the job"
        assert watch == f"  tokenflow watch {out}    # read-only"
        find_socket(out)  # listening when the command returns
        remote = RemoteControl(out)
        assert remote.snapshot().job_name == "t"
        assert asyncio.run(remote.shutdown()) == 130  # Q in an attached view: the job saves and ends
        for _ in range(600):  # bounded: the background run exits once it has saved
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            asyncio.run(asyncio.sleep(0.05))
        else:
            raise AssertionError("the background run did not end")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    log = (out / "run.log").read_text()
    assert "stopped with" in log and "progress saved" in log
    try:
        find_socket(out)
    except NotRunning as error:
        assert "the job is not running" in str(error)
    else:
        raise AssertionError("the socket still answers")


def test_detach_with_a_bad_output_says_why_from_the_log(tmp_path: Path) -> None:
    job = simulated_job(tmp_path, 10)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.jsonl").write_text('{"not": "a record"\n{"torn":')
    (tmp_path / "out" / "run.log").write_text("an earlier run's line\n")
    started = tokenflow("run", str(job), "--detach", timeout=60)
    assert started.returncode == 2
    said, why = started.stderr.splitlines()
    assert said == f"tokenflow run: the background run ended at once (exit 2); its log, {tmp_path}/out/run.log:"
    assert why.startswith(f"tokenflow run: {tmp_path}/out/results.jsonl:1: damaged record")  # this run's, alone

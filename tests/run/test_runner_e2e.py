"""Whole jobs through the real command line, the simulator over loopback, and real files."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

from run_helpers import read_records, simulated_job, start_tokenflow, tokenflow, write_input, write_job

from tokenflow_tui.sim import SimulatorConfig, SimulatorProcess

ALL_FAULTS = {
    "429": 0.04,
    "500": 0.03,
    "503": 0.02,
    "reset": 0.02,
    "stall": 0.005,
    "malformed": 0.02,
    "truncated": 0.02,
    "drip": 0.005,
    "ctype": 0.02,
}


def test_every_fault_kind_ends_with_exactly_one_final_record_per_request(tmp_path):
    job = simulated_job(tmp_path, 2000, fail=ALL_FAULTS, workers=64, timeout_s=1.0, max_attempts=3)
    run = tokenflow("run", str(job), "--headless", timeout=180)
    assert run.returncode == 0, run.stderr
    assert "finished 2,000 requests" in run.stderr
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert sorted(r["index"] for r in records) == list(range(2000))
    assert all(r["id"] == f"q{r['index']}" for r in records)
    done = [r for r in records if r["status"] == "done"]
    failed = [r for r in records if r["status"] == "failed"]
    for record in done:
        assert record["result"] == f"Echo: tell me about item {record['index']}"
        assert record["attempts"][-1]["status_code"] == 200
    for record in failed:
        assert len(record["attempts"]) == 3
        assert all("error" in attempt for attempt in record["attempts"])
        assert record["error"] == record["attempts"][-1]["error"]
    kinds = Counter(a["error"]["kind"] for r in records for a in r["attempts"] if "error" in a)
    assert set(kinds) == {"http_429", "http_5xx", "connection", "timeout", "bad_response"}
    assert len(done) > 1900


def test_sigkill_at_random_moments_then_rerun_loses_and_duplicates_nothing(tmp_path):
    # enough work that no killed run can finish it: every cycle is killed mid-run
    job = simulated_job(tmp_path, 15_000, latency_ms=20, workers=64, fail={"500": 0.05})
    results = tmp_path / "out" / "results.jsonl"
    rng = random.Random(5)
    kills = 0
    for _ in range(5):
        child = start_tokenflow("run", str(job), "--headless")
        time.sleep(rng.uniform(0.6, 1.6))  # a random moment of a real process's life, not a wait for state
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.communicate(timeout=30)
        if results.exists():
            # every line on disk is whole, valid JSON, and no index is there twice
            records = read_records(results)
            assert len({r["index"] for r in records}) == len(records)
    final = tokenflow("run", str(job), "--headless", timeout=120)
    assert final.returncode == 0, final.stderr
    records = read_records(results)
    assert sorted(r["index"] for r in records) == list(range(15_000))
    assert kills == 5


def test_sigterm_pauses_saves_and_exits_130_then_the_rerun_finishes(tmp_path):
    job = simulated_job(tmp_path, 20_000, latency_ms=50, workers=32)
    child = start_tokenflow("run", str(job), "--headless")
    state = tmp_path / "out" / "state.toml"
    deadline = time.monotonic() + 30
    while not (tmp_path / "out" / "results.jsonl").exists() or (tmp_path / "out" / "results.jsonl").stat().st_size == 0:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "stopping: letting the requests in flight finish, then saving" in err
    assert "progress saved" in err
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert 0 < len(records) < 20_000
    assert f"done = {sum(r['status'] == 'done' for r in records)}" in state.read_text()
    assert "paused = true" in state.read_text()


def test_the_api_key_reaches_no_file_and_no_output(tmp_path):
    marker = "sk-MARKER-never-write-me-0123456789"
    with SimulatorProcess(SimulatorConfig(latency_ms=1, require_key=marker, fail={"500": 0.2}, seed=3)) as sim:
        write_input(tmp_path / "prompts.jsonl", 300)
        job = write_job(
            tmp_path,
            {
                "job": {"name": "secret", "input": "prompts.jsonl", "output": "out"},
                "endpoint": {"base_url": sim.base_url, "model": "m", "api_key_env": "TF_TEST_KEY"},
                "retry": {"max_attempts": 2, "backoff_base_s": 0.01},
            },
        )
        run = tokenflow("run", str(job), "--headless", env={"TF_TEST_KEY": marker})
    assert run.returncode == 0, run.stderr
    assert marker not in run.stdout + run.stderr
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"results.jsonl", "state.toml"}
    for path in files:
        text = path.read_bytes()
        assert marker.encode() not in text and b"Bearer" not in text and b"uthorization" not in text


def test_a_refused_key_pauses_the_job_with_a_sentence_instead_of_failing_every_request(tmp_path):
    with SimulatorProcess(SimulatorConfig(latency_ms=1, require_key="the-right-key")) as sim:
        write_input(tmp_path / "prompts.jsonl", 500)
        job = write_job(
            tmp_path,
            {
                "job": {"name": "auth", "input": "prompts.jsonl", "output": "out"},
                "endpoint": {"base_url": sim.base_url, "model": "m", "api_key_env": "TF_TEST_KEY"},
                "workers": {"count": 4},
            },
        )
        run = tokenflow("run", str(job), "--headless", env={"TF_TEST_KEY": "a-wrong-key"})
    assert run.returncode == 1, run.stderr
    assert "paused: the server refused the key (401" in run.stderr
    assert "check the key in $TF_TEST_KEY, then resume" in run.stderr
    assert "a-wrong-key" not in run.stderr
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert len(records) <= 4  # the requests already in flight, not the whole input


def test_retry_failed_queues_again_only_the_failed_requests(tmp_path):
    write_input(tmp_path / "prompts.jsonl", 200)
    port_holder = SimulatorProcess(SimulatorConfig(latency_ms=1, fail={"500": 0.3}, seed=11))
    with port_holder as sim:
        port = sim.port
        job = write_job(
            tmp_path,
            {
                "job": {"name": "again", "input": "prompts.jsonl", "output": "out"},
                "endpoint": {"base_url": sim.base_url, "model": "m"},
                "retry": {"max_attempts": 1},
            },
        )
        first = tokenflow("run", str(job), "--headless")
    assert first.returncode == 0, first.stderr
    records = read_records(tmp_path / "out" / "results.jsonl")
    failed = {r["index"] for r in records if r["status"] == "failed"}
    assert 30 < len(failed) < 100
    rerun = tokenflow("run", str(job), "--headless")  # nothing left to do: no request is sent
    assert rerun.returncode == 0 and "finished 200 requests" in rerun.stderr
    with SimulatorProcess(SimulatorConfig(latency_ms=1), port=port):
        again = tokenflow("run", str(job), "--headless", "--retry-failed")
    assert again.returncode == 0, again.stderr
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert len(records) == 200 + len(failed)
    assert sorted(r["index"] for r in records[200:]) == sorted(failed)
    assert all(r["status"] == "done" for r in records[200:])
    exported = tokenflow("export", str(tmp_path / "out"))
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["index"] for r in lines] == list(range(200))
    assert all(r["status"] == "done" for r in lines)


def test_a_custom_handler_job_records_its_continued_attempts(tmp_path):
    sample = Path(__file__).parents[2] / "sample_jobs"
    for name in ("custom_handler.toml", "retry_longer.py", "questions.jsonl"):
        (tmp_path / name).write_text((sample / name).read_text())
    run = tokenflow("run", str(tmp_path / "custom_handler.toml"), "--headless", "--output", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert len(records) == 5 and all(r["status"] == "done" for r in records)
    by_id = {r["id"]: r for r in records}
    # "Echo: What is the capital of France?" is 6 words: cut at 4, whole at 8
    first = by_id[0]
    assert [a["result"] for a in first["attempts"]] == [
        {"cut_short": "Echo: What is the"},
        {"answer": "Echo: What is the capital of France?"},
    ]
    assert [a["params"].get("max_tokens") for a in first["attempts"]] == [None, 8]


def test_a_second_run_on_the_same_output_is_refused(tmp_path):
    job = simulated_job(tmp_path, 50_000, latency_ms=100, workers=8)
    child = start_tokenflow("run", str(job), "--headless")
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "out" / ".lock").exists() or not (tmp_path / "out" / ".lock").read_text():
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        second = tokenflow("run", str(job), "--headless")
        assert second.returncode == 2
        assert second.stderr.strip() == (
            f"tokenflow run: {tmp_path / 'out'} is in use by another tokenflow run (pid {child.pid})."
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)


def test_a_changed_input_is_refused_with_a_message_naming_restart(tmp_path):
    job = simulated_job(tmp_path, 20, latency_ms=1)
    assert tokenflow("run", str(job), "--headless").returncode == 0
    write_input(tmp_path / "prompts.jsonl", 21)
    changed = tokenflow("run", str(job), "--headless")
    assert changed.returncode == 2
    assert changed.stderr.strip() == (
        f"tokenflow run: {tmp_path / 'out'} holds progress that no longer matches the job: the input changed "
        "since it was saved; rerun with --restart to discard it, or set another output directory"
    )
    restarted = tokenflow("run", str(job), "--headless", "--restart")
    assert restarted.returncode == 0, restarted.stderr
    assert len(read_records(tmp_path / "out" / "results.jsonl")) == 21
    backups = list((tmp_path / "out").glob("previous-*/results.jsonl"))
    assert len(backups) == 1 and len(read_records(backups[0])) == 20


def test_a_bad_job_exits_2_with_located_messages_and_writes_nothing(tmp_path):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "a"}\n{"prompt": 3}\n')
    job = tmp_path / "job.toml"
    job.write_text('[job]\nname = "x"\ninput = "prompts.jsonl"\n\n[endpoint]\nsimulate = true\nmodle = "m"\n')
    run = tokenflow("run", str(job), "--headless")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f'{job}:7:1: unknown key "modle" in [endpoint]; did you mean "model"?']
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml", "prompts.jsonl"]

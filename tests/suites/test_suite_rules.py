"""Answer checks and retry rules through the real command line against the simulator (issue 14).

Each job runs `tokenflow run JOB --headless` in a child process with `simulate = true`; the simulator's
length, non_json and stall faults and its word limit (max_tokens words) make answers fail the checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from run_helpers import read_records, tokenflow, write_input, write_job
from suite_helpers import ThreadedSimulator

from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.sim import SimulatorConfig
from tokenflow_tui.store.report import build_report, format_report

SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}
REPAIR = "Your answer was not valid JSON for the schema: {error}. Answer again with JSON only."


def rules_job(
    directory: Path,
    count: int,
    *,
    checks: dict[str, Any],
    rules: list[dict[str, Any]] = (),
    simulator: dict[str, Any] | None = None,
    max_tokens: int = 64,
    max_attempts: int = 3,
    workers: int = 4,
    timeout_s: float = 5.0,
    backup: bool = False,
) -> Path:
    """A job against the simulator; with `backup`, as the first of two [[endpoints]], "main" and a fault-free "backup"."""
    write_input(directory / "prompts.jsonl", count)
    (directory / "schema.json").write_text(json.dumps(SCHEMA))
    endpoint = {
        "simulate": True,
        "timeout_s": timeout_s,
        "simulator": {"latency_ms": 2, "seed": 7, **(simulator or {})},
    }
    spare = {"name": "backup", "simulate": True, "timeout_s": timeout_s, "simulator": {"latency_ms": 2, "seed": 7}}
    return write_job(
        directory,
        {
            "job": {"name": "t", "input": "prompts.jsonl", "output": "out"},
            **({"endpoints": [{"name": "main", **endpoint}, spare]} if backup else {"endpoint": endpoint}),
            "request": {"params": {"max_tokens": max_tokens}},
            "workers": {"count": workers},
            "retry": {"max_attempts": max_attempts, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "rules": rules},
            "checks": checks,
        },
    )


def run(job: Path) -> list[dict[str, Any]]:
    result = tokenflow("run", str(job), "--headless", timeout=60)
    assert result.returncode == 0, result.stderr
    records = read_records(job.parent / "out" / "results.jsonl")
    return sorted(records, key=lambda record: record["index"])


def sent(attempt: dict[str, Any], key: str) -> Any:
    return (attempt["params"].get("params") or {}).get(key)


def test_the_length_rule_doubles_max_tokens_until_the_answer_fits(tmp_path):
    # "Echo: tell me about item N" is 6 words; the simulator cuts an answer to max_tokens words
    job = rules_job(
        tmp_path,
        4,
        checks={"finish_reason": True},
        rules=[{"when": "finish_reason = length", "set": {"max_tokens": "double", "max": 4096}}],
        max_tokens=2,
        max_attempts=5,
    )
    for record in run(job):
        attempts = record["attempts"]
        assert record["status"] == "done"
        assert record["result"] == f"Echo: tell me about item {record['index']}"
        assert [sent(a, "max_tokens") for a in attempts] == [None, 4, 8]
        assert [a.get("finish_reason") for a in attempts] == ["length", "length", "stop"]
        assert [a["error"]["rule"] for a in attempts[:2]] == [
            {"index": 0, "when": "finish_reason = length", "change": "max_tokens 2 → 4"},
            {"index": 0, "when": "finish_reason = length", "change": "max_tokens 4 → 8"},
        ]
        # the failed answers' tokens count: they were paid for
        assert record["usage"]["total_tokens"] == sum(a["usage"]["total_tokens"] for a in attempts)


def test_doubling_stops_at_max_and_the_request_fails_at_max_attempts(tmp_path):
    job = rules_job(
        tmp_path,
        2,
        checks={"finish_reason": ["length"]},
        rules=[{"when": "finish_reason = length", "set": {"max_tokens": "double", "max": 4}}],
        max_tokens=2,
        max_attempts=4,
    )
    for record in run(job):
        attempts = record["attempts"]
        assert record["status"] == "failed"
        assert record["error"]["kind"] == "check_failed"
        assert record["error"]["message"] == 'finish_reason: the answer ended with finish reason "length"'
        assert [sent(a, "max_tokens") for a in attempts] == [None, 4, 4, 4]
        changes = [a["error"].get("rule", {}).get("change") for a in attempts]
        assert changes == [
            "max_tokens 2 → 4",
            "max_tokens 4 → 4",
            "max_tokens 4 → 4",
            None,
        ]  # no attempt after the last


def test_a_schema_repair_loop_ends_within_max_attempts(tmp_path):
    # every answer is chatty text: the repair never works, and the loop ends at max_attempts
    job = rules_job(
        tmp_path,
        3,
        checks={"json_schema": "schema.json"},
        rules=[{"when": "check_failed = json_schema", "append_message": {"role": "user", "content": REPAIR}}],
        simulator={"json_answers": True, "fail": {"non_json": 1.0}},
        max_attempts=3,
    )
    records = run(job)
    for record in records:
        attempts = record["attempts"]
        assert record["status"] == "failed"
        assert len(attempts) == 3
        assert [len(a["params"].get("messages") or []) for a in attempts] == [0, 3, 5]
        first, second = attempts[0]["error"], attempts[1]["params"]["messages"]
        assert first["check"] == "json_schema"
        assert first["message"].startswith("json_schema: the answer is not JSON (Expecting value: line 1 column 1")
        prompt = f"tell me about item {record['index']}"
        assert second == [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": f"Sure! Here is my answer: Echo: {prompt}"},
            {"role": "user", "content": REPAIR.replace("{error}", first["message"])},
        ]
        assert [a["error"].get("rule", {}).get("index") for a in attempts] == [0, 0, None]
    lines = format_report(build_report(tmp_path / "out")).splitlines()
    tokens = sum(r["usage"]["total_tokens"] for r in records)
    prompt_tokens = sum(r["usage"]["prompt_tokens"] for r in records)
    assert [line for line in lines if not line.startswith(("run ", "latency ", "  check_failed", "tokens "))] == [
        "requests   3: 3 finished (0 done, 3 failed), 0 without a record",
        "records    3 in results.jsonl",
        "failures   3",
        "attempts   9 (6 retries; 3 requests retried)",
        "rules      caught attempts, rescued requests (done after it caught one), tokens of the rescues",
        "  check json_schema                    9 caught  0 rescued  0 tokens",
        "  rule 1 (check_failed = json_schema)  6 caught  0 rescued  0 tokens",
    ]
    assert f"tokens     {tokens:,} (prompt {prompt_tokens:,}, completion {tokens - prompt_tokens:,})" in lines


def test_repairs_that_work_are_counted_as_rescues_the_same_by_report_and_by_a_reopened_run(tmp_path):
    job = rules_job(
        tmp_path,
        12,
        checks={"json_schema": "schema.json", "finish_reason": True},
        rules=[
            {"when": "finish_reason = length", "set": {"max_tokens": "double", "max": 256}},
            {"when": "check_failed = json_schema", "append_message": {"role": "user", "content": REPAIR}},
        ],
        simulator={"json_answers": True, "fail": {"non_json": 0.4, "length": 0.2}},
        max_attempts=6,
        workers=1,  # one draw order of the seeded faults
    )
    records = run(job)
    expected: dict[str, list[int]] = {}
    for record in records:
        first: dict[str, int] = {}
        for position, attempt in enumerate(record["attempts"]):
            error = attempt.get("error") or {}
            keys = [f"check {error['check']}"] if "check" in error else []
            if "rule" in error:
                keys.append(f"rule {error['rule']['index'] + 1}")
            for key in keys:
                expected.setdefault(key, [0, 0, 0])[0] += 1
                first.setdefault(key, position)
        for key, position in first.items():
            if record["status"] == "done":
                expected[key][1] += 1
                expected[key][2] += sum(a["usage"]["total_tokens"] for a in record["attempts"][position + 1 :])
    assert expected["rule 2"][1] >= 1  # the seed gives some rescues by repair …
    assert expected["rule 1"][1] >= 1  # … and by doubling
    report = build_report(tmp_path / "out")
    assert {r.name: [r.caught, r.rescued, r.tokens] for r in report.rules} == expected
    runner = JobRunner(load_job(job), save_interval_s=3600)
    runner.open()
    try:
        lines = runner.snapshot().rules
    finally:
        runner.close()
    assert [(line.name, line.label) for line in lines] == [
        ("check finish_reason", "finish_reason"),
        ("check json_schema", "json_schema"),
        ("rule 1", "finish_reason = length"),
        ("rule 2", "check_failed = json_schema"),
    ]
    assert {line.name: [line.caught, line.rescued, line.tokens] for line in lines} == expected


@pytest.mark.parametrize(
    ("checks", "message"),
    [
        (
            {"json": True},
            "json: the answer is not JSON (Expecting value: line 1 column 1 (char 0)): 'Echo: tell me about item 0'",
        ),
        ({"regex": "item [5-9]"}, "regex: the answer does not match 'item [5-9]': 'Echo: tell me about item 0'"),
        ({"min_chars": 40}, "min_chars: the answer has 26 characters, fewer than min_chars 40"),
        ({"max_chars": 10}, "max_chars: the answer has 26 characters, more than max_chars 10"),
    ],
)
def test_each_check_fails_an_answer_with_which_check_and_why(tmp_path, checks, message):
    record = run(rules_job(tmp_path, 1, checks=checks, max_attempts=1))[0]
    assert record["status"] == "failed"
    assert record["error"] == {
        "kind": "check_failed",
        "message": message,
        "status_code": 200,
        "excerpt": None,
        "check": next(iter(checks)),
        "finish_reason": "stop",
        "answer": "Echo: tell me about item 0",
    }


def test_error_and_status_rules_set_the_model_and_move_to_another_endpoint(tmp_path):
    job = rules_job(
        tmp_path,
        6,
        checks={"min_chars": 1},
        rules=[
            {"when": "error = timeout", "set": {"model": "sim-2"}, "endpoint": "backup"},
            {"when": "status = 503", "set": {"temperature": 0}},
        ],
        simulator={"fail": {"stall": 0.3, "503": 0.3}},
        max_attempts=6,
        timeout_s=0.3,
        workers=6,
        backup=True,
    )
    seen = set()
    for record in run(job):
        attempts = record["attempts"]
        for before, after in zip(attempts, attempts[1:]):
            error = before["error"]
            if error["kind"] == "timeout":
                seen.add("timeout")
                assert error["rule"] == {
                    "index": 0,
                    "when": "error = timeout",
                    "change": "model → sim-2; endpoint → backup",
                }
                assert (sent(after, "model"), sent(after, "_endpoint")) == ("sim-2", "backup")
                assert (before["endpoint"], after["endpoint"]) == ("main", "backup")
            else:
                seen.add(error["status_code"])
                assert error["rule"] == {"index": 1, "when": "status = 503", "change": "temperature → 0"}
                assert sent(after, "temperature") == 0
    assert seen == {"timeout", 503}


def test_structured_sends_the_schema_as_response_format_and_the_trajectory_shows_it(tmp_path):
    bodies: list[dict[str, Any]] = []
    with ThreadedSimulator(SimulatorConfig(latency_ms=1, json_answers=True)) as sim:
        answer = sim._simulator.reply

        def seen(request):
            if request.path.endswith("/chat/completions"):
                bodies.append(json.loads(request.body))
            return answer(request)

        sim._simulator.reply = seen  # the connections ask their host for each reply
        write_input(tmp_path / "prompts.jsonl", 2)
        (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
        job = write_job(
            tmp_path,
            {
                "job": {"name": "t", "input": "prompts.jsonl", "output": "out"},
                "endpoint": {"base_url": sim.base_url, "model": "m", "structured": True},
                "checks": {"json_schema": "schema.json"},
            },
        )
        assert len(run(job)) == 2
    expected = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
    assert [body["response_format"] for body in bodies] == [expected, expected]
    runner = JobRunner(load_job(job), save_interval_s=3600)
    runner.open()
    try:
        assert runner.trajectory(0)[0]["body"]["response_format"] == expected
    finally:
        runner.close()


def test_the_rules_demo_is_valid():
    sample = Path(__file__).parents[2] / "sample_jobs" / "rules_demo.toml"
    result = tokenflow("validate", str(sample))
    assert result.returncode == 0, result.stderr
    assert "  checks    finish_reason, json_schema\n" in result.stdout
    assert "  rule 1    finish_reason = length → max_tokens = double, max 64\n" in result.stdout


def test_a_check_that_no_answer_passes_pauses_the_job_instead_of_burning_the_input(tmp_path):
    # a wrong check fails every request at every attempt: the storm detector pauses the job, as for a 400
    job = rules_job(tmp_path, 2_000, checks={"regex": "^no answer says this$"}, max_attempts=2, workers=4)
    result = tokenflow("run", str(job), "--headless", timeout=60)
    assert result.returncode == 1, result.stderr
    records = read_records(job.parent / "out" / "results.jsonl")
    assert 20 <= len(records) < 200  # judged over the last 50 finished requests, once 20 have finished
    assert {record["status"] for record in records} == {"failed"}
    assert {len(record["attempts"]) for record in records} == {2}
    assert (
        "of the last" in result.stderr
        and "failed with errors that retrying cannot fix (mostly check_failed," in result.stderr
    )

"""The job fingerprint: a resume is refused when what shapes the requests changed, allowed when only
the traffic settings did (DESIGN §2.3)."""

from __future__ import annotations

import asyncio
import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest
from run_helpers import write_input, write_job

from tokenflow_tui.job.fingerprint import PARTS, changes, fingerprint
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.opening import RunError
from tokenflow_tui.run.runner import JobRunner

KEYS = {"KEY": "k", "OTHER_KEY": "k"}
HANDLER = "from tokenflow import ActionDone\n\nasync def handler(trajectory):\n    return ActionDone(), 'ok'\n"


REMOTE = {
    "job": {"name": "fp", "input": "prompts.jsonl", "output": "out"},
    "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "KEY", "timeout_s": 30},
    "request": {"params": {"max_tokens": 16, "temperature": 0.5}},
    "workers": {"count": 8},
    "retry": {"max_attempts": 3},
}
WITH_HANDLER = {
    "job": {"name": "fp", "input": "prompts.jsonl", "output": "out"},
    "handler": {"path": "h.py:handler"},
    "workers": {"count": 2},
}


def sections(base: dict[str, Any], **changed_keys: Any) -> dict[str, Any]:
    """`base` with each `section__key=value` set."""
    result = copy.deepcopy(base)
    for dotted, value in changed_keys.items():
        section, key = dotted.split("__")
        result.setdefault(section, {})[key] = value
    return result


def remote(**changed_keys: Any) -> dict[str, Any]:
    return sections(REMOTE, **changed_keys)


def with_handler(**changed_keys: Any) -> dict[str, Any]:
    return sections(WITH_HANDLER, **changed_keys)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_input(tmp_path / "prompts.jsonl", 3)
    (tmp_path / "h.py").write_text(HANDLER)
    return tmp_path


def changed(folder: Path, before: dict[str, Any], after: dict[str, Any]) -> str | None:
    saved = fingerprint(load_job(write_job(folder, before), KEYS))
    job = load_job(write_job(folder, after), KEYS)
    return changes(saved, job, fingerprint(job))


@pytest.mark.parametrize(
    "traffic",
    [
        {"workers__count": 64},
        {"workers__adaptive": True, "workers__max": 500},
        {"retry__max_attempts": 7, "retry__backoff_max_s": 5.0},
        {"limits__requests_per_minute": 600, "limits__max_total_tokens": 10_000},
        {"endpoint__timeout_s": 5},
        {"endpoint__transport": "httpx"},
        {"endpoint__api_key_env": "OTHER_KEY"},
        {"job__name": "renamed"},
    ],
    ids=lambda d: ",".join(d),
)
def test_settings_that_only_shape_the_traffic_may_change(folder, traffic):
    assert changed(folder, remote(), remote(**traffic)) is None


def test_the_simulator_knobs_may_change(folder):
    simulated = {
        "job": {"name": "fp", "input": "prompts.jsonl"},
        "endpoint": {"simulate": True, "simulator": {"latency_ms": 5}},
    }
    slower = {**simulated, "endpoint": {"simulate": True, "simulator": {"latency_ms": 500, "fail": {"429": 0.5}}}}
    assert changed(folder, simulated, slower) is None


@pytest.mark.parametrize(
    ("request_change", "said"),
    [
        ({"endpoint__base_url": "http://127.0.0.1:10/v1"}, "[endpoint] base_url"),
        ({"endpoint__model": "m2"}, "[endpoint] model"),
        ({"endpoint__api": "completions"}, "[endpoint] api"),
        ({"request__params": {"max_tokens": 17, "temperature": 0.5}}, "[request] params"),
        ({"endpoint__model": "m2", "request__params": {}}, "[endpoint] model and [request] params"),
    ],
    ids=["base_url", "model", "api", "params", "two"],
)
def test_what_shapes_the_requests_may_not(folder, request_change, said):
    assert changed(folder, remote(), remote(**request_change)) == said


def test_params_in_another_order_are_the_same_requests(folder):
    reordered = remote(request__params={"temperature": 0.5, "max_tokens": 16})
    assert changed(folder, remote(), reordered) is None


def test_the_input_and_the_handler_are_part_of_it(folder):
    saved = fingerprint(load_job(write_job(folder, with_handler()), {}))
    (folder / "h.py").write_text(HANDLER.replace("'ok'", "'changed'"))
    job = load_job(write_job(folder, with_handler()), {})
    assert changes(saved, job, fingerprint(job)) == "the handler file"
    (folder / "h2.py").write_text(HANDLER)
    job = load_job(write_job(folder, with_handler(handler__path="h2.py:handler")), {})
    assert changes(saved, job, fingerprint(job)) == "[handler] path"
    write_input(folder / "prompts.jsonl", 4)
    assert changes(saved, job, fingerprint(job)) == "the input and [handler] path"  # h2.py is what h.py was
    job = load_job(write_job(folder, with_handler()), {})
    (folder / "h.py").write_text(HANDLER)
    assert changes(saved, job, fingerprint(job)) == "the input"
    assert set(fingerprint(job)) == {"input", "params", "handler_path", "handler_file"}
    assert set(fingerprint(load_job(write_job(folder, remote()), KEYS))) == set(PARTS) - {
        "handler_path",
        "handler_file",
        "input_format",  # only for inputs other than our JSONL
        "columns",
        "checks",  # only with [checks]
    }


RULE = {"when": "finish_reason = length", "set": {"max_tokens": "double", "max": 64}}


def test_checks_are_part_of_it_and_retry_rules_are_not(folder):
    """[checks] decide which answers were done; rules only change the params of the retries (issue 14)."""
    (folder / "schema.json").write_text('{"type": "object"}')
    checked = remote(checks__finish_reason=True, retry__rules=[RULE])
    assert changed(folder, remote(), checked) == "[checks]"
    assert changed(folder, checked, remote(checks__finish_reason=True)) is None  # the rule went
    other_rule = {**RULE, "set": {"max_tokens": "double", "max": 128}}
    assert changed(folder, checked, remote(checks__finish_reason=True, retry__rules=[other_rule])) is None
    assert changed(folder, checked, remote(checks__finish_reason=["length"], retry__rules=[RULE])) == "[checks]"
    with_schema = remote(checks__json_schema="schema.json")
    saved = fingerprint(load_job(write_job(folder, with_schema), KEYS))
    (folder / "schema.json").write_text('{"type": "array"}')
    job = load_job(write_job(folder, with_schema), KEYS)
    assert changes(saved, job, fingerprint(job)) == "[checks]"  # the schema's content counts
    structured = remote(checks__json_schema="schema.json", endpoint__structured=True)
    assert changed(folder, with_schema, structured) == "[checks]"  # the schema is sent with every request


def test_a_fingerprint_saved_before_it_had_parts_is_still_recognised(folder):
    path = write_job(folder, remote())
    job = load_job(path, KEYS)
    job_bytes = path.read_bytes()
    whole = hashlib.sha256(
        len(job_bytes).to_bytes(8, "big") + job_bytes + (folder / "prompts.jsonl").read_bytes()
    ).hexdigest()
    assert changes(whole, job, fingerprint(job)) is None
    job = load_job(write_job(folder, remote(workers__count=9)), KEYS)
    assert changes(whole, job, fingerprint(job)) == "the job file or the input"


def run_to_the_end(job_path: Path) -> None:
    runner = JobRunner(load_job(job_path, {}), save_interval_s=3600)
    runner.open()
    assert asyncio.run(runner.run()) == 0
    runner.close()


def test_a_resume_with_more_workers_opens_and_one_with_other_params_is_refused(folder):
    run_to_the_end(write_job(folder, with_handler()))
    state = (folder / "out" / "state.toml").read_text()
    assert "[fingerprint]" in state and "handler_file = " in state

    more = JobRunner(load_job(write_job(folder, with_handler(workers__count=16)), {}))
    more.open()
    assert more.snapshot().stats.done == 3
    more.close()

    (folder / "h.py").write_text(HANDLER + "# another version\n")
    refused = JobRunner(load_job(write_job(folder, with_handler(workers__count=16)), {}))
    with pytest.raises(RunError) as caught:
        refused.open()
    assert str(caught.value) == (
        f"{folder / 'out'} holds progress that no longer matches the job: the handler file changed since it "
        "was saved; rerun with --accept-changes to resume anyway, or with --restart to discard it"
    )

"""[[endpoints]] through the runner in this process: `_endpoint` routing, what the dashboard shows per endpoint
and that it equals `tokenflow report` after a reopen; the body sent never holds `_endpoint`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from run_helpers import read_records, write_job
from suite_helpers import ThreadedSimulator

from tokenflow_tui.endpoint.openai_handler import request_body
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.endpoint_pool import routed_to
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.sim import SimulatorConfig
from tokenflow_tui.store.report import EndpointCounts, build_report


def write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def two_endpoint_job(tmp_path: Path, first: str, second: str, lines: list[dict[str, Any]]) -> Path:
    write_lines(tmp_path / "prompts.jsonl", lines)
    return write_job(
        tmp_path,
        {
            "job": {"name": "routes", "input": "prompts.jsonl", "output": "out"},
            "endpoints": [
                {"name": "a", "base_url": first, "model": "m", "weight": 9},
                {"name": "b", "base_url": second, "model": "m"},
            ],
            "workers": {"count": 8},
        },
    )


def run_job(job: Path) -> JobRunner:
    runner = JobRunner(load_job(job), save_interval_s=3600)
    runner.open()
    assert asyncio.run(runner.run()) == 0
    return runner


def test_the_body_sent_leaves_the_endpoint_key_out():
    line = {"prompt": "hi", "params": {"temperature": 0.5, "_endpoint": "b"}}
    assert request_body({"model": "m"}, line, chat=True) == {
        "model": "m",
        "temperature": 0.5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert line["params"] == {"temperature": 0.5, "_endpoint": "b"}  # the attempt's params keep it
    assert [routed_to(line), routed_to({"prompt": "x", "_endpoint": "a"}), routed_to({"prompt": "x"})] == [
        "b",
        "a",
        None,
    ]


def test_params_naming_an_endpoint_go_there_and_the_counts_survive_a_reopen(tmp_path):
    lines = [{"id": f"q{i}", "prompt": f"item {i}"} for i in range(100)]
    for i in range(0, 100, 4):  # a quarter named for b, whose weight alone would give it a tenth
        lines[i]["params"] = {"_endpoint": "b"}
    with ThreadedSimulator(SimulatorConfig(latency_ms=0)) as a, ThreadedSimulator(SimulatorConfig(latency_ms=0)) as b:
        runner = run_job(two_endpoint_job(tmp_path, a.base_url, b.base_url, lines))
        served = a.requests(), b.requests()
        shown = {view.name: (view.attempts, view.errors, view.done) for view in runner.snapshot().endpoints}
        runner.close()
        records = read_records(tmp_path / "out" / "results.jsonl")
        by_id = {r["id"]: r for r in records}
        assert all(by_id[f"q{i}"]["attempts"][0]["endpoint"] == "b" for i in range(0, 100, 4))
        others = [r["attempts"][0]["endpoint"] for r in records if int(r["id"][1:]) % 4]
        # 75 by weight 9 : 1, the smooth round robin giving b one pick in ten (within one)
        assert abs(others.count("b") - 7.5) <= 1
        b_count = 25 + others.count("b")
        assert served == (100 - b_count, b_count)
        assert shown == {"a": (100 - b_count, 0, 100 - b_count), "b": (b_count, 0, b_count)}
        report = build_report(tmp_path / "out")
        assert report.endpoints == (EndpointCounts("a", *shown["a"]), EndpointCounts("b", *shown["b"]))
        reopened = run_job(tmp_path / "job.toml")  # nothing left to do: the figures come from state.toml
        assert {v.name: (v.attempts, v.errors, v.done) for v in reopened.snapshot().endpoints} == shown
        assert [(v.state, v.weight) for v in reopened.snapshot().endpoints] == [("sending", 9.0), ("sending", 1.0)]
        reopened.close()


def test_params_naming_no_endpoint_fail_that_request_with_a_sentence(tmp_path):
    lines = [{"id": "good", "prompt": "x"}, {"id": "bad", "prompt": "y", "params": {"_endpoint": "c"}}]
    with ThreadedSimulator(SimulatorConfig(latency_ms=0)) as a, ThreadedSimulator(SimulatorConfig(latency_ms=0)) as b:
        run_job(two_endpoint_job(tmp_path, a.base_url, b.base_url, lines)).close()
    records = {r["id"]: r for r in read_records(tmp_path / "out" / "results.jsonl")}
    assert records["good"]["status"] == "done"
    assert records["bad"]["status"] == "failed"
    assert records["bad"]["error"]["message"] == (
        'ValueError: no endpoint is named "c" (the params\' _endpoint); the endpoints: "a", "b"'
    )

"""[[endpoints]] through the runner in this process: `_endpoint` routing, what the dashboard shows per endpoint
and that it equals `tokenflow report` after a reopen; the body sent never holds `_endpoint`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from run_helpers import read_records, tokenflow, write_job
from suite_helpers import ThreadedSimulator

from tokenflow_tui.endpoint.openai_handler import request_body
from tokenflow_tui.job.model import routed_to
from tokenflow_tui.job.reader import load_job
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


def test_params_naming_no_endpoint_are_refused_before_anything_is_sent(tmp_path):
    lines = [{"id": "good", "prompt": "x"}, {"id": "bad", "prompt": "y", "params": {"_endpoint": "c"}}]
    with ThreadedSimulator(SimulatorConfig(latency_ms=0)) as a, ThreadedSimulator(SimulatorConfig(latency_ms=0)) as b:
        refused = tokenflow("run", str(two_endpoint_job(tmp_path, a.base_url, b.base_url, lines)), "--headless")
        sent = a.requests() + b.requests()
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f'{tmp_path / "prompts.jsonl"}:2:1: "_endpoint" names no endpoint: "c" (the job\'s [[endpoints]]: "a", "b")'
    ]
    assert sent == 0 and not (tmp_path / "out").exists()


def pool_of(tmp_path: Path, weights: dict[str, float], rpm: dict[str, float] | None = None):
    from tokenflow_tui.engine import ManualClock
    from tokenflow_tui.run.endpoint_pool import EndpointPool

    write_lines(tmp_path / "prompts.jsonl", [{"prompt": "x"}])
    endpoints = [
        {"name": name, "base_url": f"http://127.0.0.1:{9000 + i}/v1", "model": "m", "weight": weight}
        | ({"requests_per_minute": (rpm or {})[name]} if name in (rpm or {}) else {})
        for i, (name, weight) in enumerate(weights.items())
    ]
    job = load_job(write_job(tmp_path, {"job": {"name": "p", "input": "prompts.jsonl"}, "endpoints": endpoints}))
    paused: list[str] = []
    notes: list[str] = []
    pool = EndpointPool(
        job,
        clock=ManualClock(),
        running=lambda: True,
        pause_job=paused.append,
        note=lambda kind, text: notes.append(f"{kind}: {text}"),
        spent=lambda: (0, 0),
        sending=lambda: 0,
        sent_at=lambda: None,
        addresses={e["name"]: e["base_url"] for e in endpoints},
    )
    return pool, paused, notes


def test_weights_give_each_endpoint_its_share_of_every_stretch(tmp_path):
    pool, _, _ = pool_of(tmp_path, {"a": 5, "b": 2, "c": 1})
    picks = [pool.choose({"prompt": "x"}).name for _ in range(800)]  # type: ignore[union-attr]
    for start in range(0, 800, 8):  # every 8 picks: exactly 5, 2 and 1
        stretch = picks[start : start + 8]
        assert (stretch.count("a"), stretch.count("b"), stretch.count("c")) == (5, 2, 1)


def test_an_endpoint_whose_limit_holds_is_passed_over_while_another_can_go_now(tmp_path):
    pool, _, _ = pool_of(tmp_path, {"slow": 10, "fast": 1}, rpm={"slow": 60})
    slow = pool.routes[0]
    assert slow.traffic.free_now()
    slow.traffic._requests.take(1, 1_000.0)  # type: ignore[union-attr]  # its one request of the second is taken
    assert not slow.traffic.free_now()
    assert [pool.choose({"prompt": "x"}).name for _ in range(5)] == ["fast"] * 5  # type: ignore[union-attr]
    # named in the params, it is chosen all the same (the attempt then waits at its limit)
    assert pool.choose({"prompt": "x", "params": {"_endpoint": "slow"}}) is slow


def test_an_endpoint_whose_server_says_its_allowance_is_spent_is_held_alone_and_the_log_says_so(tmp_path):
    pool, paused, notes = pool_of(tmp_path, {"a": 1, "b": 1})
    a, b = pool.routes
    spent = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0"}
    a.traffic.on_headers({**spent, "x-ratelimit-reset-requests": "20s"})
    views = pool.views({"a": [3, 1, 2]})
    assert [(v.name, v.state, v.reason, v.attempts, v.errors, v.done) for v in views] == [
        ("a", "held", "the server's x-ratelimit-remaining-requests is spent", 3, 1, 2),
        ("b", "sending", None, 0, 0, 0),
    ]
    assert notes == ["hold: endpoint a: dispatch held: the server's x-ratelimit-remaining-requests is spent"]
    pool.views({})
    assert len(notes) == 1  # told once per hold
    assert {pool.choose({"prompt": "x"}) for _ in range(4)} == {b} and paused == []


def test_paused_endpoints_are_skipped_the_job_pauses_when_none_is_left_and_a_resume_tries_them_again(tmp_path):
    pool, paused, notes = pool_of(tmp_path, {"a": 1, "b": 1})
    a, b = pool.routes
    pool.refused_key(a, 401, "Incorrect API key provided")
    assert notes == [
        "endpoint: endpoint a paused: the server refused the key (401: Incorrect API key provided); "
        "check the endpoint's key, then resume"
    ]
    assert {pool.choose({"prompt": "x"}).name for _ in range(4)} == {"b"}  # type: ignore[union-attr]
    # a param naming a paused endpoint goes elsewhere rather than wait for it
    assert pool.choose({"prompt": "x", "_endpoint": "a"}) is b
    assert paused == []
    pool.pause_endpoint(b, "the server at http://127.0.0.1:9001/v1 cannot be reached")
    assert pool.choose({"prompt": "x"}) is None
    assert paused == [
        "every endpoint is paused (a: the server refused the key (401: Incorrect API key provided); check the "
        "endpoint's key, then resume; b: the server at http://127.0.0.1:9001/v1 cannot be reached)"
    ]
    assert [v.state for v in pool.views({})] == ["paused", "paused"]
    pool.resumed()
    assert notes[-2:] == ["endpoint: endpoint a resumed", "endpoint: endpoint b resumed"]
    assert [v.state for v in pool.views({})] == ["sending", "sending"]
    assert {pool.choose({"prompt": "x"}).name for _ in range(4)} == {"a", "b"}  # type: ignore[union-attr]


def test_simulated_endpoints_each_start_their_own_simulator(tmp_path):
    write_lines(tmp_path / "prompts.jsonl", [{"prompt": f"item {i}"} for i in range(40)])
    job = write_job(
        tmp_path,
        {
            "job": {"name": "sims", "input": "prompts.jsonl", "output": "out"},
            "endpoints": [
                {"name": "one", "simulate": True, "simulator": {"latency_ms": 1}},
                {"name": "two", "simulate": True, "simulator": {"latency_ms": 1, "rpm_limit": 100_000}},
            ],
            "workers": {"count": 4},
        },
    )
    run_job(job).close()
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert all(r["status"] == "done" and r["result"].startswith("Echo: item ") for r in records)
    assert [sum(1 for r in records if r["attempts"][0]["endpoint"] == name) for name in ("one", "two")] == [20, 20]


def test_a_retry_after_an_error_goes_to_another_endpoint_at_once(tmp_path):
    # every answer of a is a 429 asking for 30 s: its requests are retried on b without waiting them out
    lines = [{"id": f"q{i}", "prompt": f"item {i}"} for i in range(40)]
    refusing = SimulatorConfig(latency_ms=0, fail={"429": 1.0}, retry_after=30)
    with ThreadedSimulator(refusing) as a, ThreadedSimulator(SimulatorConfig(latency_ms=0)) as b:
        run_job(two_endpoint_job(tmp_path, a.base_url, b.base_url, lines)).close()
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert all(r["status"] == "done" for r in records)
    retried = [r["attempts"] for r in records if len(r["attempts"]) > 1]
    assert retried and all(len(attempts) == 2 for attempts in retried)
    for first, second in retried:
        assert (first["endpoint"], first["error"]["kind"], second["endpoint"]) == ("a", "http_429", "b")
        assert second["started_at"] - first["started_at"] < 30  # not after a's Retry-After

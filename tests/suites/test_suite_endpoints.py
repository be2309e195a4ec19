"""Several endpoints ([[endpoints]], issue 14): requests spread by weight, an endpoint that is dead, limited or
refuses its key is paused or slowed alone, every endpoint paused pauses the job. Real processes over loopback,
simulators in threads of the test process so their counters can be read.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

from run_helpers import read_records, tokenflow, write_input, write_job
from suite_helpers import ThreadedSimulator

from tokenflow_tui.sim import SimulatorConfig


def free_port() -> int:
    """A loopback port that nothing listens on (bound once, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def endpoint(name: str, base_url: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "base_url": base_url, "model": "m", "timeout_s": 5.0, **more}


def counts_from_records(records: list[dict[str, Any]]) -> dict[str, list[int]]:
    """name → [attempts, failed attempts, requests done by their final attempt there], from results.jsonl."""
    counts: dict[str, list[int]] = {}
    for record in records:
        for attempt in record["attempts"]:
            entry = counts.setdefault(attempt["endpoint"], [0, 0, 0])
            entry[0] += 1
            entry[1] += "error" in attempt
        if record["status"] == "done":
            counts[record["attempts"][-1]["endpoint"]][2] += 1
    return counts


def report_lines(out: Path) -> list[str]:
    report = tokenflow("report", str(out))
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("endpoints  "))
    return lines[start:]


def expected_report(counts: dict[str, list[int]]) -> list[str]:
    width = max(len(name) for name in counts)
    return [f"endpoints  {len(counts)}"] + [
        f"  {name:<{width}}  {a:,} attempt{'' if a == 1 else 's'} ({e:,} failed), {d:,} done"
        for name, (a, e, d) in sorted(counts.items())
    ]


def events(out: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (out / "events.jsonl").read_text().splitlines()]


def test_weights_spread_requests_over_unlimited_servers(tmp_path):
    write_input(tmp_path / "prompts.jsonl", 2000)
    with (
        ThreadedSimulator(SimulatorConfig(latency_ms=0)) as big,
        ThreadedSimulator(SimulatorConfig(latency_ms=0)) as small,
    ):
        job = write_job(
            tmp_path,
            {
                "job": {"name": "spread", "input": "prompts.jsonl", "output": "out"},
                "endpoints": [endpoint("big", big.base_url, weight=3), endpoint("small", small.base_url)],
                "workers": {"count": 32},
            },
        )
        run = tokenflow("run", str(job), "--headless", timeout=120)
        assert run.returncode == 0, run.stderr
        served = big.requests(), small.requests()
    records = read_records(tmp_path / "out" / "results.jsonl")
    counts = counts_from_records(records)
    assert sum(counts["big"][:1] + counts["small"][:1]) == 2000 and not any(r["status"] == "failed" for r in records)
    # smooth weighted round robin: 3 of every 4 picks, within the few attempts in flight at the end
    assert abs(counts["big"][0] - 1500) <= 4, counts
    assert (counts["big"][0], counts["small"][0]) == served
    assert report_lines(tmp_path / "out") == expected_report(counts)


def test_one_dead_and_one_limited_endpoint_the_job_finishes_on_the_others(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    write_input(tmp_path / "prompts.jsonl", 300)
    limited_config = SimulatorConfig(latency_ms=1, rpm_limit=20, rate_window_s=1.0)
    with ThreadedSimulator(limited_config) as limited, ThreadedSimulator(SimulatorConfig(latency_ms=1)) as good:
        job = write_job(
            tmp_path,
            {
                "job": {"name": "three", "input": "prompts.jsonl", "output": "out"},
                "endpoints": [
                    endpoint("dead", dead),
                    endpoint("limited", limited.base_url, weight=2),
                    endpoint("good", good.base_url),
                ],
                "workers": {"count": 24},
                "retry": {"max_attempts": 8, "backoff_base_s": 0.05, "backoff_max_s": 0.5},
            },
        )
        run = tokenflow("run", str(job), "--headless", timeout=120)
        assert run.returncode == 0, run.stderr
        served = {"limited": limited.requests(), "good": good.requests()}
    out = tmp_path / "out"
    records = read_records(out / "results.jsonl")
    assert len(records) == 300 and all(r["status"] == "done" for r in records)
    counts = counts_from_records(records)
    assert counts.get("dead", [0, 0, 0])[2] == 0  # its attempts were given back, not spent
    assert counts["limited"][0] == served["limited"] and counts["good"][0] == served["good"]
    assert counts["limited"][1] > 0  # its server refused some with 429 …
    assert Counter(a["error"]["kind"] for r in records for a in r["attempts"] if "error" in a)["http_429"] == sum(
        c[1] for name, c in counts.items() if name == "limited"
    )  # … and only its attempts were refused so
    assert f"endpoint dead paused: the server at {dead} cannot be reached (" in "\n".join(events(out))
    assert report_lines(out) == expected_report(counts)


def test_an_endpoint_that_refuses_its_key_is_paused_alone(tmp_path):
    write_input(tmp_path / "prompts.jsonl", 200)
    with (
        ThreadedSimulator(SimulatorConfig(latency_ms=1, require_key="right-key")) as locked,
        ThreadedSimulator(SimulatorConfig(latency_ms=1)) as open_,
    ):
        job = write_job(
            tmp_path,
            {
                "job": {"name": "keys", "input": "prompts.jsonl", "output": "out"},
                "endpoints": [
                    endpoint("locked", locked.base_url, api_key_env="LOCKED_KEY"),
                    endpoint("open", open_.base_url),
                ],
                "workers": {"count": 8},
            },
        )
        run = tokenflow("run", str(job), "--headless", env={"LOCKED_KEY": "wrong-key"}, timeout=120)
        assert run.returncode == 0, run.stderr
        refused = locked.requests()
    out = tmp_path / "out"
    records = read_records(out / "results.jsonl")
    counts = counts_from_records(records)
    assert len(records) == 200 and all(r["status"] == "done" for r in records)
    # every attempt that went to it was refused, at most one per worker before it was paused
    assert counts["locked"][0] == counts["locked"][1] == refused and 1 <= refused <= 8
    assert counts["open"][2] == 200
    paused = [text for text in events(out) if text.startswith("endpoint locked paused: ")]
    assert len(paused) == 1 and "the server refused the key (401: " in paused[0]
    assert paused[0].endswith("check the key in $LOCKED_KEY, then resume")
    assert "wrong-key" not in (out / "events.jsonl").read_text() + run.stderr


def test_every_endpoint_dead_pauses_the_job(tmp_path):
    first, second = (f"http://127.0.0.1:{free_port()}/v1" for _ in range(2))
    write_input(tmp_path / "prompts.jsonl", 100)
    job = write_job(
        tmp_path,
        {
            "job": {"name": "dead", "input": "prompts.jsonl", "output": "out"},
            "endpoints": [endpoint("one", first), endpoint("two", second)],
            # 32 attempts held at each: enough for either detector to judge its server dead at once
            "workers": {"count": 64},
            "retry": {"max_attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02},
        },
    )
    run = tokenflow("run", str(job), "--headless", timeout=60)
    assert run.returncode == 1, run.stderr
    assert "dead: paused: every endpoint is paused (one: the server at " in run.stderr
    assert f"; two: the server at {second} cannot be reached (" in run.stderr
    assert "stopped with 0 of 100 requests finished; progress saved" in run.stderr
    results = tmp_path / "out" / "results.jsonl"
    assert not results.exists() or results.read_text() == ""

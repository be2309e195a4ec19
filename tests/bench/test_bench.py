"""`tokenflow bench`: the plan, the report, and a tiny real run (shape and sanity of its figures, not speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tokenflow_tui.bench.plan import FULL, QUICK, Point, make_plan, parse_points
from tokenflow_tui.bench.report import format_result
from tokenflow_tui.bench.suite import targets
from tokenflow_tui.cli.main import main


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenflow_tui", "bench", *args], capture_output=True, text=True, timeout=110
    )


def test_a_tiny_run_gives_every_figure_as_json():
    done = bench("--quick", "--json", "--requests", "100", "--engine-requests", "20000", "--points", "16@0,32@10")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    assert set(result) == {"machine", "quick", "repeat", "engine", "http", "streaming", "targets"}
    assert (result["quick"], result["repeat"]) == (True, 1)
    assert result["machine"]["cpus"] >= 1
    assert len(result["machine"]["load_before"]) == len(result["machine"]["load_after"]) == 3

    engine = result["engine"]
    assert (engine["requests"], engine["workers"]) == (20_000, 64)
    assert engine["engine_requests_per_s"] > 0 and engine["bare_requests_per_s"] > 0
    assert engine["engine_vs_bare"] == engine["engine_requests_per_s"] / engine["bare_requests_per_s"]
    assert 10 < engine["engine_peak_rss_mb"] < 1000
    assert engine["seed_requests"] == 20_000 and engine["seed_requests_per_s"] > 0
    assert engine["seed_vs_bare"] == engine["seed_requests_per_s"] / engine["bare_requests_per_s"]
    assert 10 < engine["seed_peak_rss_mb"] < 1000
    # a finished request kept in the seed's list: its request, trajectory, list and attempt, not kilobytes
    assert 100 < engine["seed_kept_bytes_per_request"] < 2000

    assert [(p["in_flight"], p["latency_ms"], p["requests"]) for p in result["http"]] == [(16, 0, 100), (32, 10, 100)]
    for point in result["http"]:
        loop, raw = point["yardstick"], point["raw_yardstick"]
        assert loop["requests"] == 100 and loop["requests_per_s"] > 0 and loop["cpu_ms_per_request"] > 0
        assert raw["requests"] == 100 and raw["requests_per_s"] > 0 and raw["cpu_ms_per_request"] > 0
        assert list(point["transports"]) == ["asyncio", "aiohttp", "httpx"]
        for figures in point["transports"].values():
            assert figures["requests"] == 100
            assert figures["requests_per_s"] > 0
            assert figures["cpu_ms_per_request"] > 0
            assert 10 < figures["peak_rss_mb"] < 1000
            assert figures["startup_cpu_s"] > 0
            assert figures["cpu_vs_yardstick"] == figures["cpu_ms_per_request"] / loop["cpu_ms_per_request"]
            assert figures["cpu_vs_raw_yardstick"] == figures["cpu_ms_per_request"] / raw["cpu_ms_per_request"]
        cheaper = point["cheaper"]
        winner = point["transports"][cheaper["transport"]]
        # the next cheapest
        loser = min(
            (figures for name, figures in point["transports"].items() if name != cheaper["transport"]),
            key=lambda figures: figures["cpu_ms_per_request"],
        )
        assert winner["cpu_ms_per_request"] <= loser["cpu_ms_per_request"]
        assert cheaper["cpu_factor"] == loser["cpu_ms_per_request"] / winner["cpu_ms_per_request"] >= 1
        assert cheaper["rate_factor"] == winner["requests_per_s"] / loser["requests_per_s"]

    streaming = result["streaming"]
    assert (streaming["in_flight"], streaming["tokens"], streaming["requests"]) == (64, 64, 100)
    assert streaming["yardstick"]["requests"] == streaming["run"]["requests"] == 100
    assert streaming["yardstick"]["cpu_ms_per_request"] > 0 and streaming["run"]["cpu_ms_per_request"] > 0
    assert streaming["run"]["cpu_vs_yardstick"] == (
        streaming["run"]["cpu_ms_per_request"] / streaming["yardstick"]["cpu_ms_per_request"]
    )

    # the engine's, the raw yardstick's of each point and the streaming target were measured: neither
    # 256@50 nor 1000@200 was among the points
    # the targets judge the default transport
    raw_ratios = [point["transports"]["asyncio"]["cpu_vs_raw_yardstick"] for point in result["http"]]
    assert result["targets"] == [
        {
            "what": "engine, no-op handler, 64 workers: requests/s",
            "value": engine["engine_requests_per_s"],
            "target": 250_000,
            "at_most": False,
            "met": engine["engine_requests_per_s"] >= 250_000,
        },
        {
            "what": "engine with a sink / the bare pool",
            "value": engine["engine_vs_bare"],
            "target": 0.5,
            "at_most": False,
            "met": engine["engine_vs_bare"] >= 0.5,
        },
        {
            "what": "engine through the seed's API / the bare pool",
            "value": engine["seed_vs_bare"],
            "target": 0.5,
            "at_most": False,
            "met": engine["seed_vs_bare"] >= 0.5,
        },
        {
            "what": "client CPU per request / the raw aiohttp yardstick's, 16 in flight, 0 ms",
            "value": raw_ratios[0],
            "target": 1.0,
            "at_most": True,
            "met": raw_ratios[0] <= 1.0,
        },
        {
            "what": "client CPU per request / the raw aiohttp yardstick's, 32 in flight, 10 ms",
            "value": raw_ratios[1],
            "target": 1.0,
            "at_most": True,
            "met": raw_ratios[1] <= 1.0,
        },
        {
            "what": "client CPU per streamed request (64 tokens) / the SSE yardstick's, 64 in flight",
            "value": streaming["run"]["cpu_vs_yardstick"],
            "target": 1.3,
            "at_most": True,
            "met": streaming["run"]["cpu_vs_yardstick"] <= 1.3,
        },
    ]
    assert "measuring 32 in flight, 10 ms: tokenflow run --headless, transport httpx, 100 requests" in done.stderr
    assert "measuring 32 in flight, 10 ms: raw aiohttp yardstick loop, 100 requests" in done.stderr
    assert "measuring engine: seed, 20,000 no-op requests, 64 workers" in done.stderr
    assert "measuring streamed, 64 tokens, 64 in flight: SSE yardstick loop, 100 requests" in done.stderr


def test_a_bad_point_is_a_sentence_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "--points", "64@50,0@10"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "tokenflow bench: error: argument --points: '0@10' is not IN_FLIGHT@LATENCY_MS (for example 256@50): "
        "in flight a whole number of at least 1, latency from 0 to 60000 ms"
    )


def test_points_parse():
    assert parse_points("64@0, 256@50,1000@200.5") == ((64, 0.0), (256, 50.0), (1000, 200.5))
    for bad in ("64", "@50", "x@1", "64@-1", "64@60001", "64@0,"):
        with pytest.raises(ValueError, match="is not IN_FLIGHT@LATENCY_MS"):
            parse_points(bad)


def test_the_plans():
    assert FULL.points == (Point(64, 0, 20_000), Point(256, 50, 20_000), Point(1000, 200, 30_000))
    assert (FULL.engine_requests, FULL.repeat, FULL.stream_requests, QUICK.stream_requests) == (
        1_000_000,
        1,
        10_000,
        2_000,
    )
    assert [(p.in_flight, p.latency_ms) for p in QUICK.points] == [(64, 0), (256, 50), (1000, 200)]
    plan = make_plan(True, requests=500, engine_requests=1000, repeat=3)
    assert plan.points == (Point(64, 0, 500), Point(256, 50, 500), Point(1000, 200, 500))
    assert (plan.engine_requests, plan.repeat, plan.stream_requests) == (1000, 3, 500)
    assert make_plan(False, points=((8, 5.0),)).points == (Point(8, 5.0, 30_000),)
    assert make_plan(False, requests=7, points=((8, 5.0),)).points == (Point(8, 5.0, 7),)


def figures(requests_per_s: float, cpu_ms: float, ratio: float, raw_ratio: float = 1.4) -> dict:
    return {
        "requests": 20_000,
        "requests_per_s": requests_per_s,
        "cpu_ms_per_request": cpu_ms,
        "peak_rss_mb": 61.4,
        "startup_cpu_s": 0.5,
        "cpu_vs_yardstick": ratio,
        "cpu_vs_raw_yardstick": raw_ratio,
    }


RESULT = {
    "machine": {
        "cpus": 2,
        "python": "3.11.7",
        "platform": "Linux",
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [1.5, 1.2, 1.0],
    },
    "quick": False,
    "repeat": 3,
    "engine": {
        "requests": 1_000_000,
        "workers": 64,
        "engine_requests_per_s": 281_000.4,
        "bare_requests_per_s": 750_000.0,
        "engine_vs_bare": 0.3747,
        "engine_peak_rss_mb": 54.9,
        "seed_requests": 300_000,
        "seed_requests_per_s": 150_000.0,
        "seed_vs_bare": 0.2,
        "seed_peak_rss_mb": 170.2,
        "seed_kept_bytes_per_request": 401.6,
    },
    "http": [
        {
            "in_flight": 256,
            "latency_ms": 50,
            "requests": 20_000,
            "yardstick": {"requests": 20_000, "requests_per_s": 2313.2, "cpu_ms_per_request": 0.353},
            "raw_yardstick": {"requests": 20_000, "requests_per_s": 3500.0, "cpu_ms_per_request": 0.2},
            "transports": {
                "asyncio": figures(3600.0, 0.19, 0.5382, 0.95),
                "aiohttp": figures(3227.0, 0.246, 0.6969, 1.23),
                "httpx": figures(1100.0, 0.9, 2.5496, 4.5),
            },
            "cheaper": {"transport": "asyncio", "cpu_factor": 1.2947, "rate_factor": 1.1156},
        }
    ],
}


def test_the_report_for_a_person():
    result = dict(RESULT, targets=targets(RESULT))
    assert format_result(result) == [
        "tokenflow bench: 2 CPUs, Python 3.11.7, load average 1.00 before, 1.50 after (1 min; other work lowers "
        "every figure)",
        "every figure is the median of 3 rounds",
        "",
        "Engine overhead: 1,000,000 no-op requests, 64 workers",
        "  TokenFlowTask, sink       281,000 requests/s   peak RSS 55 MB, 37% of the bare pool",
        "  seed API, list kept       150,000 requests/s   peak RSS 170 MB, 20% of the bare pool (300,000 requests, "
        "402 bytes kept per finished request)",
        "  bare asyncio pool         750,000 requests/s",
        "",
        "HTTP: tokenflow run --headless against the simulator in its own process",
        "                                       requests/s  CPU ms/request  vs yardstick  peak RSS",
        "256 in flight, simulator at 50 ms, 20,000 requests",
        "  run, transport asyncio (default)          3,600           0.190         0.54x     61 MB",
        "  run, transport aiohttp                    3,227           0.246         0.70x     61 MB",
        "  run, transport httpx                      1,100           0.900         2.55x     61 MB",
        "  yardstick: httpx over aiohttp loop        2,313           0.353",
        "  raw yardstick: aiohttp loop               3,500           0.200",
        "  vs raw yardstick: asyncio 0.95x, aiohttp 1.23x, httpx 4.50x",
        "  asyncio wins: 1.29x less CPU per request than the next, 1.12x its requests/s",
        "  requests/s: finished requests over the run's own running time",
        "  CPU ms/request: user + sys of the runner process from the OS, less the interpreter's start and imports",
        "  vs yardstick: that CPU over the yardstick's, a minimal loop of httpx over the httpx-aiohttp",
        "  transport in the same run (below 1.00x: the run costs less per request than the yardstick);",
        "  vs raw yardstick: over a minimal loop of raw aiohttp (one ClientSession) in the same run",
        "",
        "Targets this project sets itself (docs/performance.md)",
        "  engine, no-op handler, 64 workers: requests/s: 281,000 (target ≥ 250,000) met",
        "  engine with a sink / the bare pool: 0.37 (target ≥ 0.50) NOT met",
        "  engine through the seed's API / the bare pool: 0.20 (target ≥ 0.50) NOT met",
        "  client CPU per request / the raw aiohttp yardstick's, 256 in flight, 50 ms: 0.95 (target ≤ 1.00) met",
        "  client CPU per request / the yardstick's, 256 in flight, 50 ms: 0.54 (target ≤ 1.30) met",
    ]


def test_the_report_of_streamed_requests():
    run = dict(figures(2258.0, 0.474, 1.2154), requests=10_000)
    streaming = {
        "in_flight": 64,
        "tokens": 64,
        "requests": 10_000,
        "yardstick": {"requests": 10_000, "requests_per_s": 2215.4, "cpu_ms_per_request": 0.39},
        "run": run,
    }
    result = dict(RESULT, streaming=streaming)
    lines = format_result(dict(result, targets=targets(result)))
    start = lines.index("Streaming: 10,000 streamed requests of 64 tokens, 64 in flight, simulator at 0 ms")
    assert lines[start + 1 : start + 4] == [
        "                                       requests/s  CPU ms/request  vs yardstick  peak RSS",
        "  run, stream = true, asyncio               2,258           0.474         1.22x     61 MB",
        "  yardstick: aiohttp SSE loop               2,215           0.390",
    ]
    assert lines[-1] == (
        "  client CPU per streamed request (64 tokens) / the SSE yardstick's, 64 in flight: 1.22 (target ≤ 1.30) met"
    )


def test_a_target_not_met_says_so():
    point = dict(RESULT["http"][0], in_flight=1000, latency_ms=200)
    found = targets(dict(RESULT, http=[point]))
    assert found[-1] == {
        "what": "requests/s, 1,000 in flight, 200 ms",
        "value": 3600.0,
        "target": 4_500,
        "at_most": False,
        "met": False,
    }
    point["transports"] = dict(point["transports"], asyncio=figures(4600.0, 0.2, 1.1, 0.98))
    found = targets(dict(RESULT, http=[point]))
    assert found[-1]["met"] is True
    assert found[-2] == {
        "what": "client CPU per request / the raw aiohttp yardstick's, 1,000 in flight, 200 ms",
        "value": 0.98,
        "target": 1.0,
        "at_most": True,
        "met": True,
    }
    assert format_result(dict(RESULT, http=[point], targets=found))[-1] == (
        "  requests/s, 1,000 in flight, 200 ms: 4,600 (target ≥ 4,500) met"
    )

"""Runs a plan's measurements and gathers their figures as plain data (what `--json` prints).

Within a point the yardstick and each transport's run take turns, repeat after repeat, so a change
of load on the machine falls on all of them alike; each figure is the median over the repeats.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..endpoint.transport import TRANSPORTS, TransportName  # the runner's default first
from ..sim import SimulatorConfig, SimulatorProcess
from . import engine, headless_run, yardstick
from .plan import ENGINE_WORKERS, STREAM_IN_FLIGHT, Plan, Point
from .workload import STREAM_TOKENS

# DESIGN §5, the figures `bench` can check itself (the first wave's, and those raised for the second)
ENGINE_TARGET_PER_S = 250_000
ENGINE_RATIO_TARGET = 0.5  # of the bare pool, on both paths through the engine
SEED_REQUESTS = 300_000  # at most, for the seed's API: it keeps every finished request
CPU_RATIO_TARGET = 1.3
CPU_RATIO_POINT = (256, 50)
RAW_CPU_RATIO_TARGET = 1.0  # at every point
RATE_TARGET_PER_S = 4_500
RATE_POINT = (1000, 200)
STREAM_CPU_RATIO_TARGET = 1.3
# a measured run counts as hung past 10 ms a request (100/s: ten times slower than plain httpx here)
_SECONDS_PER_REQUEST = 0.01
_MIN_TIMEOUT_S = 120.0

Progress = Callable[[str], None]


def run_plan(plan: Plan, quick: bool, progress: Progress) -> dict[str, Any]:
    load_before = _load()
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "quick": quick,
        "repeat": plan.repeat,
        "engine": _engine(plan, progress),
        "http": [],
    }
    with tempfile.TemporaryDirectory(prefix="tokenflow-bench-") as scratch:
        for point in plan.points:
            result["http"].append(_point(point, plan.repeat, Path(scratch), progress))
        result["streaming"] = _streaming(plan, Path(scratch), progress)
    result["machine"]["load_before"], result["machine"]["load_after"] = load_before, _load()
    result["targets"] = targets(result)
    return result


def _engine(plan: Plan, progress: Progress) -> dict[str, Any]:
    n, seed_n = plan.engine_requests, min(plan.engine_requests, SEED_REQUESTS)
    runs: dict[str, list[engine.EngineFigures]] = {kind: [] for kind in engine.KINDS}
    for round_ in range(plan.repeat):
        for kind in engine.KINDS:
            size = seed_n if kind == "seed" else n
            progress(f"engine: {kind}, {size:,} no-op requests, {ENGINE_WORKERS} workers{_round(round_, plan.repeat)}")
            runs[kind].append(engine.measure(kind, size, ENGINE_WORKERS))
    engine_rate, seed_rate, bare_rate = (
        statistics.median(f.requests_per_s for f in runs[kind]) for kind in engine.KINDS
    )
    kept = [f.kept_bytes_per_request for f in runs["seed"] if f.kept_bytes_per_request is not None]
    return {
        "requests": n,
        "workers": ENGINE_WORKERS,
        "engine_requests_per_s": engine_rate,
        "bare_requests_per_s": bare_rate,
        "engine_vs_bare": engine_rate / bare_rate,
        "engine_peak_rss_mb": statistics.median(f.peak_rss_mb for f in runs["engine"]),
        "seed_requests": seed_n,
        "seed_requests_per_s": seed_rate,
        "seed_vs_bare": seed_rate / bare_rate,
        "seed_peak_rss_mb": statistics.median(f.peak_rss_mb for f in runs["seed"]),
        "seed_kept_bytes_per_request": statistics.median(kept) if kept else None,
    }


def _point(point: Point, repeat: int, scratch: Path, progress: Progress) -> dict[str, Any]:
    timeout = max(_MIN_TIMEOUT_S, point.requests * _SECONDS_PER_REQUEST)
    where = f"{point.in_flight} in flight, {point.latency_ms:g} ms"
    loops: list[yardstick.LoopFigures] = []
    raw_loops: list[yardstick.LoopFigures] = []
    runs: dict[TransportName, list[headless_run.RunFigures]] = {transport: [] for transport in TRANSPORTS}
    with SimulatorProcess(SimulatorConfig(latency_ms=point.latency_ms)) as simulator:
        for round_ in range(repeat):
            suffix = _round(round_, repeat)
            progress(f"{where}: yardstick loop, {point.requests:,} requests{suffix}")
            loops.append(yardstick.measure(simulator.base_url, point.in_flight, point.requests, timeout))
            progress(f"{where}: raw aiohttp yardstick loop, {point.requests:,} requests{suffix}")
            raw_loops.append(
                yardstick.measure(simulator.base_url, point.in_flight, point.requests, timeout, loop="aiohttp")
            )
            for transport in TRANSPORTS:
                progress(
                    f"{where}: tokenflow run --headless, transport {transport}, {point.requests:,} requests{suffix}"
                )
                folder = scratch / f"{point.in_flight}-{point.latency_ms:g}-{transport}-{round_}"
                runs[transport].append(
                    headless_run.measure(
                        folder, simulator.base_url, transport, point.in_flight, point.requests, timeout
                    )
                )
    loop, raw_loop = _median_of(loops), _median_of(raw_loops)
    by_transport: dict[str, dict[str, Any]] = {}
    for transport, figures in runs.items():
        median = _median_of(figures)
        median["cpu_vs_yardstick"] = median["cpu_ms_per_request"] / loop["cpu_ms_per_request"]
        median["cpu_vs_raw_yardstick"] = median["cpu_ms_per_request"] / raw_loop["cpu_ms_per_request"]
        by_transport[transport] = median
    return {
        "in_flight": point.in_flight,
        "latency_ms": point.latency_ms,
        "requests": point.requests,
        "yardstick": loop,
        "raw_yardstick": raw_loop,
        "transports": by_transport,
        "cheaper": _cheaper(by_transport),
    }


def _streaming(plan: Plan, scratch: Path, progress: Progress) -> dict[str, Any]:
    """Streamed requests of 64 tokens: the runner (default transport) beside the aiohttp SSE yardstick."""
    requests, in_flight = plan.stream_requests, STREAM_IN_FLIGHT
    timeout = max(_MIN_TIMEOUT_S, requests * _SECONDS_PER_REQUEST)
    where = f"streamed, {STREAM_TOKENS} tokens, {in_flight} in flight"
    loops: list[yardstick.LoopFigures] = []
    runs: list[headless_run.RunFigures] = []
    with SimulatorProcess(SimulatorConfig(latency_ms=0)) as simulator:
        for round_ in range(plan.repeat):
            suffix = _round(round_, plan.repeat)
            progress(f"{where}: SSE yardstick loop, {requests:,} requests{suffix}")
            loops.append(yardstick.measure(simulator.base_url, in_flight, requests, timeout, loop="sse"))
            progress(f"{where}: tokenflow run --headless, stream = true, {requests:,} requests{suffix}")
            folder = scratch / f"stream-{round_}"
            runs.append(
                headless_run.measure(folder, simulator.base_url, TRANSPORTS[0], in_flight, requests, timeout, True)
            )
    loop = _median_of(loops)
    run = _median_of(runs)
    run["cpu_vs_yardstick"] = run["cpu_ms_per_request"] / loop["cpu_ms_per_request"]
    return {"in_flight": in_flight, "tokens": STREAM_TOKENS, "requests": requests, "yardstick": loop, "run": run}


def _cheaper(by_transport: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The transport with the least client CPU per request, and by how much (CPU and requests/s) over the next."""
    best, other = sorted(by_transport, key=lambda t: by_transport[t]["cpu_ms_per_request"])[:2]
    winner, loser = by_transport[best], by_transport[other]
    return {
        "transport": best,
        "cpu_factor": loser["cpu_ms_per_request"] / winner["cpu_ms_per_request"],
        "rate_factor": winner["requests_per_s"] / loser["requests_per_s"],
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The DESIGN §5 figures this run measured, each with its value and whether it is met."""
    figures_of_engine = result["engine"]
    found = [
        _target(
            f"engine, no-op handler, {ENGINE_WORKERS} workers: requests/s",
            figures_of_engine["engine_requests_per_s"],
            ENGINE_TARGET_PER_S,
            at_most=False,
        ),
        _target(
            "engine with a sink / the bare pool",
            figures_of_engine["engine_vs_bare"],
            ENGINE_RATIO_TARGET,
            at_most=False,
        ),
    ]
    if "seed_vs_bare" in figures_of_engine:
        found.append(
            _target(
                "engine through the seed's API / the bare pool",
                figures_of_engine["seed_vs_bare"],
                ENGINE_RATIO_TARGET,
                at_most=False,
            )
        )
    default = TRANSPORTS[0]
    for point in result["http"]:
        spot = (point["in_flight"], point["latency_ms"])
        figures = point["transports"][default]
        where = f"{spot[0]:,} in flight, {spot[1]:g} ms"
        if "cpu_vs_raw_yardstick" in figures:
            found.append(
                _target(
                    f"client CPU per request / the raw aiohttp yardstick's, {where}",
                    figures["cpu_vs_raw_yardstick"],
                    RAW_CPU_RATIO_TARGET,
                    at_most=True,
                )
            )
        if spot == CPU_RATIO_POINT:
            found.append(
                _target(
                    f"client CPU per request / the yardstick's, {where}",
                    figures["cpu_vs_yardstick"],
                    CPU_RATIO_TARGET,
                    at_most=True,
                )
            )
        if spot == RATE_POINT:
            found.append(_target(f"requests/s, {where}", figures["requests_per_s"], RATE_TARGET_PER_S, at_most=False))
    streaming = result.get("streaming")
    if streaming is not None:
        found.append(
            _target(
                f"client CPU per streamed request ({streaming['tokens']} tokens) / the SSE yardstick's, "
                f"{streaming['in_flight']} in flight",
                streaming["run"]["cpu_vs_yardstick"],
                STREAM_CPU_RATIO_TARGET,
                at_most=True,
            )
        )
    return found


def _target(what: str, value: float, target: float, at_most: bool) -> dict[str, Any]:
    return {
        "what": what,
        "value": value,
        "target": target,
        "at_most": at_most,
        "met": value <= target if at_most else value >= target,
    }


def _median_of(figures: list[Any]) -> dict[str, Any]:
    rows = [asdict(f) for f in figures]
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def _round(round_: int, repeat: int) -> str:
    return f" (round {round_ + 1} of {repeat})" if repeat > 1 else ""


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None  # not every system can tell

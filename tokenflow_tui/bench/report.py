"""The figures of a `tokenflow bench` run as text for a person."""

from __future__ import annotations

from typing import Any

from ..endpoint.transport import TRANSPORTS


def format_result(result: dict[str, Any]) -> list[str]:
    machine = result["machine"]
    lines = [
        f"tokenflow bench{' --quick' if result['quick'] else ''}: {machine['cpus']} CPUs, "
        f"Python {machine['python']}, {_load(machine)}"
    ]
    if result["repeat"] > 1:
        lines.append(f"every figure is the median of {result['repeat']} rounds")
    lines += ["", *_engine(result["engine"]), "", *_http(result["http"])]
    if "streaming" in result:
        lines += ["", *_streaming(result["streaming"])]
    lines += ["", *_targets(result["targets"])]
    return lines


def _load(machine: dict[str, Any]) -> str:
    before, after = machine.get("load_before"), machine.get("load_after")
    if not before or not after:
        return "load unknown"
    return f"load average {before[0]:.2f} before, {after[0]:.2f} after (1 min; other work lowers every figure)"


def _engine(figures: dict[str, Any]) -> list[str]:
    lines = [
        f"Engine overhead: {figures['requests']:,} no-op requests, {figures['workers']} workers",
        f"  TokenFlowTask, sink    {figures['engine_requests_per_s']:>10,.0f} requests/s   "
        f"peak RSS {figures['engine_peak_rss_mb']:.0f} MB, {figures['engine_vs_bare']:.0%} of the bare pool",
    ]
    if "seed_requests_per_s" in figures:
        kept = figures["seed_kept_bytes_per_request"]
        lines.append(
            f"  seed API, list kept    {figures['seed_requests_per_s']:>10,.0f} requests/s   "
            f"peak RSS {figures['seed_peak_rss_mb']:.0f} MB, {figures['seed_vs_bare']:.0%} of the bare pool "
            f"({figures['seed_requests']:,} requests"
            + (f", {kept:.0f} bytes kept per finished request)" if kept is not None else ")")
        )
    lines.append(f"  bare asyncio pool      {figures['bare_requests_per_s']:>10,.0f} requests/s")
    return lines


def _http(points: list[dict[str, Any]]) -> list[str]:
    lines = [
        "HTTP: tokenflow run --headless against the simulator in its own process",
        f"  {'':36}{'requests/s':>11}{'CPU ms/request':>16}{'vs yardstick':>14}{'peak RSS':>10}",
    ]
    for point in points:
        lines.append(
            f"{point['in_flight']:,} in flight, simulator at {point['latency_ms']:g} ms, {point['requests']:,} requests"
        )
        for transport in TRANSPORTS:
            figures = point["transports"][transport]
            label = f"run, transport {transport}" + (" (default)" if transport == TRANSPORTS[0] else "")
            lines.append(
                f"  {label:36}{figures['requests_per_s']:>11,.0f}{figures['cpu_ms_per_request']:>16.3f}"
                f"{figures['cpu_vs_yardstick']:>13.2f}x{figures['peak_rss_mb']:>7.0f} MB"
            )
        loop = point["yardstick"]
        lines.append(
            f"  {'yardstick: httpx over aiohttp loop':36}{loop['requests_per_s']:>11,.0f}"
            f"{loop['cpu_ms_per_request']:>16.3f}"
        )
        raw = point.get("raw_yardstick")
        if raw is not None:
            lines.append(
                f"  {'raw yardstick: aiohttp loop':36}{raw['requests_per_s']:>11,.0f}{raw['cpu_ms_per_request']:>16.3f}"
            )
            lines.append(
                "  vs raw yardstick: "
                + ", ".join(
                    f"{transport} {point['transports'][transport]['cpu_vs_raw_yardstick']:.2f}x"
                    for transport in TRANSPORTS
                )
            )
        cheaper = point["cheaper"]
        lines.append(
            f"  {cheaper['transport']} wins: {cheaper['cpu_factor']:.2f}x less CPU per request than the next, "
            f"{cheaper['rate_factor']:.2f}x its requests/s"
        )
    lines += [
        "  requests/s: finished requests over the run's own running time",
        "  CPU ms/request: user + sys of the runner process from the OS, less the interpreter's start and imports",
        "  vs yardstick: that CPU over the yardstick's, a minimal loop of httpx over the httpx-aiohttp",
        "  transport in the same run (below 1.00x: the run costs less per request than the yardstick);",
        "  vs raw yardstick: over a minimal loop of raw aiohttp (one ClientSession) in the same run",
    ]
    return lines


def _streaming(figures: dict[str, Any]) -> list[str]:
    run, loop = figures["run"], figures["yardstick"]
    return [
        f"Streaming: {figures['requests']:,} streamed requests of {figures['tokens']} tokens, "
        f"{figures['in_flight']} in flight, simulator at 0 ms",
        f"  {'':36}{'requests/s':>11}{'CPU ms/request':>16}{'vs yardstick':>14}{'peak RSS':>10}",
        f"  {f'run, stream = true, {TRANSPORTS[0]}':36}{run['requests_per_s']:>11,.0f}"
        f"{run['cpu_ms_per_request']:>16.3f}{run['cpu_vs_yardstick']:>13.2f}x{run['peak_rss_mb']:>7.0f} MB",
        f"  {'yardstick: aiohttp SSE loop':36}{loop['requests_per_s']:>11,.0f}{loop['cpu_ms_per_request']:>16.3f}",
    ]


def _targets(found: list[dict[str, Any]]) -> list[str]:
    lines = ["Targets this project sets itself (docs/performance.md)"]
    for target in found:
        verdict = "met" if target["met"] else "NOT met"
        bound = "≤" if target["at_most"] else "≥"
        lines.append(
            f"  {target['what']}: {_number(target['value'])} (target {bound} {_number(target['target'])}) {verdict}"
        )
    return lines


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"

"""The headless front end: plain progress lines on stderr, Ctrl-C or SIGTERM to pause and save."""

from __future__ import annotations

import asyncio
import math
import signal
from typing import TextIO

from ..run.contract import RunSnapshot, TrafficView
from ..run.control_server import HostedRun
from ..run.durations import duration, eta_text
from ..run.exit_codes import EXIT_STOPPED_BY_ITSELF


def progress_line(snap: RunSnapshot) -> str:
    s = snap.stats
    total = s.total or 0
    finished = s.done + s.failed
    percent = 100.0 * finished / total if total else 100.0
    # requests held back by a limit, a hold or the pace are not in flight: said apart, when there are some
    waiting = f"{s.waiting:,} waiting · " if s.waiting else ""
    line = (
        f"{snap.job_name}: {finished:,}/{total:,} ({percent:.1f}%) · {s.failed:,} failed · "
        f"{s.in_flight:,} in flight · {waiting}{s.rate_10s:,.0f} req/s · {snap.tokens_per_s_now:,.0f} tok/s · "
        f"ETA {eta_text(snap.state, s, snap.longest_in_flight_s)}"
    )
    return " · ".join((line, *_traffic_parts(snap.traffic)))


def _traffic_parts(traffic: TrafficView) -> list[str]:
    """The traffic control that acts now: a hold, the adaptive target, the pace, the budgets."""
    parts = []
    if traffic.held_s > 0:
        parts.append(f"held {math.ceil(traffic.held_s)} s")
    if traffic.target_workers is not None:
        parts.append(f"target {traffic.target_workers:,} workers")
    if traffic.pace_per_minute:
        parts.append(f"paced {traffic.pace_per_minute:,.0f}/min")
    if traffic.max_total_tokens:
        parts.append(f"{traffic.tokens_used:,}/{traffic.max_total_tokens:,} tokens")
    if traffic.max_cost_usd and traffic.cost_usd is not None:
        parts.append(f"${traffic.cost_usd:,.2f}/${traffic.max_cost_usd:,.2f}")
    return parts


def pause_line(snap: RunSnapshot) -> str:
    """Why the job paused by itself (a refused key, an unreachable server, a full disk)."""
    return f"{snap.job_name}: paused: {snap.reason}"


def final_line(snap: RunSnapshot, code: int) -> str:
    s = snap.stats
    results = snap.results_path
    if code == 0:
        return (
            f"{snap.job_name}: finished {s.total:,} requests ({s.done:,} done, {s.failed:,} failed) "
            f"in {duration(s.elapsed_s)}; results in {results}"
        )
    line = (
        f"{snap.job_name}: stopped with {s.done + s.failed:,} of {s.total:,} requests finished; "
        f"progress saved in {results}; run the same command again to resume"
    )
    if snap.unsaved:
        line += f"; {snap.unsaved:,} finished requests could not be written (saving failed) and run again then"
    return line


async def run_headless(runner: HostedRun, out: TextIO, interval_s: float = 2.0) -> int:
    """Run the job to the end or until interrupted; the exit code (§2.1)."""
    loop = asyncio.get_running_loop()
    interrupts = 0
    stopped_by_itself = False
    told: str | None = None  # the pause reason last printed

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print(
                "stopping: letting the requests in flight finish, then saving (press Ctrl-C again to stop at once)",
                file=out,
                flush=True,
            )
            loop.create_task(runner.shutdown())
        elif interrupts == 2:
            print("stopping now", file=out, flush=True)
            loop.create_task(runner.stop_now())

    async def report() -> None:
        nonlocal stopped_by_itself, told
        while True:
            await asyncio.sleep(interval_s)
            snap = runner.snapshot()
            print(progress_line(snap), file=out, flush=True)
            if snap.state == "paused" and snap.reason and snap.reason != told and not stopped_by_itself:
                told = snap.reason
                print(pause_line(snap), file=out, flush=True)
                if not snap.unsaved:  # a full disk: the runner retries the save and resumes by itself
                    stopped_by_itself = True
                    loop.create_task(runner.shutdown())

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    reporter = loop.create_task(report())
    try:
        code = await runner.run()
    finally:
        reporter.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        runner.close()
    if stopped_by_itself and code != 0:
        code = EXIT_STOPPED_BY_ITSELF
    print(final_line(runner.snapshot(), code), file=out, flush=True)
    return code

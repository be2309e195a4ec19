"""The headless front end: plain progress lines on stderr, Ctrl-C or SIGTERM to pause and save."""
from __future__ import annotations

import asyncio
import signal
from typing import TextIO

from .durations import duration
from .exit_codes import EXIT_STOPPED_BY_ITSELF
from .runner import JobRunner
from .view import RunSnapshot


def progress_line(snap: RunSnapshot) -> str:
    s = snap.stats
    total = s.total or 0
    finished = s.done + s.failed
    percent = 100.0 * finished / total if total else 100.0
    return (
        f"{snap.job_name}: {finished:,}/{total:,} ({percent:.1f}%) · {s.failed:,} failed · "
        f"{s.in_flight:,} in flight · {s.rate_10s:,.0f} req/s · {snap.tokens_per_s_now:,.0f} tok/s · "
        f"ETA {duration(s.eta_s)}"
    )


def final_line(snap: RunSnapshot, code: int) -> str:
    s = snap.stats
    results = f"{snap.output_dir}/results.jsonl"
    if code == 0:
        return (
            f"{snap.job_name}: finished {s.total:,} requests ({s.done:,} done, {s.failed:,} failed) "
            f"in {duration(s.elapsed_s)}; results in {results}"
        )
    return (
        f"{snap.job_name}: stopped with {s.done + s.failed:,} of {s.total:,} requests finished; "
        f"progress saved in {results}; run the same command again to resume"
    )


async def run_headless(runner: JobRunner, out: TextIO, interval_s: float = 2.0) -> int:
    """Run the job to the end or until interrupted; the exit code (§2.1)."""
    loop = asyncio.get_running_loop()
    interrupts = 0
    stopped_by_itself = False

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print("stopping: letting the requests in flight finish, then saving "
                  "(press Ctrl-C again to stop at once)", file=out, flush=True)
            loop.create_task(runner.shutdown())
        elif interrupts == 2:
            print("stopping now", file=out, flush=True)
            loop.create_task(runner.stop_now())

    async def report() -> None:
        nonlocal stopped_by_itself
        while True:
            await asyncio.sleep(interval_s)
            snap = runner.snapshot()
            print(progress_line(snap), file=out, flush=True)
            if snap.state == "paused" and snap.reason and not stopped_by_itself:
                stopped_by_itself = True
                print(f"{snap.job_name}: paused: {snap.reason}", file=out, flush=True)
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

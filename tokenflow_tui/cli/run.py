"""`tokenflow run JOB.toml`: the dashboard on a terminal, plain progress lines otherwise; a rerun resumes."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import time
from pathlib import Path

from ..run.exit_codes import EXIT_INVALID
from .arguments import positive_int, print_problems
from .gc_tuning import tune_gc_for_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", type=Path, metavar="JOB.toml")
    parser.add_argument("--headless", action="store_true", help="plain progress lines, even on a terminal")
    parser.add_argument("--workers", type=positive_int, metavar="N", help="start with N workers")
    parser.add_argument("--output", type=Path, metavar="DIR", help="write the run here instead of the job's output")
    parser.add_argument("--restart", action="store_true", help="discard earlier progress of this output (kept aside)")
    parser.add_argument("--retry-failed", action="store_true", help="queue again the requests whose last record failed")


def command(args: argparse.Namespace) -> int:
    from ..job.problems import JobError
    from ..job.reader import load_job
    from ..run.opening import RunError
    from ..run.runner import JobRunner

    try:
        job = load_job(args.job)
    except JobError as error:
        print_problems(error)
        return EXIT_INVALID
    if args.output is not None:
        job = dataclasses.replace(job, job=dataclasses.replace(job.job, output=args.output.resolve()))
    interactive = sys.stdout.isatty() and sys.stdin.isatty() and not args.headless
    if args.restart and not _set_aside(job.output, ask=interactive):
        return EXIT_INVALID
    runner = JobRunner(job, workers=args.workers, retry_failed=args.retry_failed)
    try:
        runner.open()
    except JobError as error:
        print_problems(error)
        return EXIT_INVALID
    except RunError as error:
        print(f"tokenflow run: {error}", file=sys.stderr)
        return EXIT_INVALID
    tune_gc_for_run()
    if interactive:
        from ..ui import run_dashboard

        try:
            return run_dashboard(runner)
        finally:
            runner.close()
    from .headless import run_headless

    return asyncio.run(run_headless(runner, sys.stderr))


def _set_aside(output: Path, ask: bool) -> bool:
    """Move an output's earlier progress aside for --restart (asking first on a terminal)."""
    from ..store.results_file import RESULTS_FILE
    from ..store.state_file import STATE_FILE

    files = [output / name for name in (RESULTS_FILE, STATE_FILE) if (output / name).exists()]
    if not files:
        return True
    if ask:
        answer = input(f"Discard the progress in {output} (it is moved to a backup folder)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("tokenflow run: nothing was changed", file=sys.stderr)
            return False
    backup = output / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    backup.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.move(str(path), backup / path.name)
    print(f"earlier progress moved to {backup}", file=sys.stderr)
    return True

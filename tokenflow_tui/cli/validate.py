"""`tokenflow validate JOB.toml`: checks a job and its input without sending anything."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..run.exit_codes import EXIT_INVALID
from .arguments import print_problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", type=Path, metavar="JOB.toml")


def command(args: argparse.Namespace) -> int:
    from ..job.describe import describe
    from ..job.handler_loader import load_handler
    from ..job.inputs import scan_input
    from ..job.problems import JobError
    from ..job.reader import load_job

    try:
        job = load_job(args.job)
        summary = scan_input(job)
        if job.handler is not None:
            load_handler(job)
    except JobError as error:
        print_problems(error)
        return EXIT_INVALID
    print(f"{args.job}: valid")
    for line in describe(job, summary):
        print(f"  {line}")
    return 0

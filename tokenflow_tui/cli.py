"""The `tokenflow` command line (DESIGN §2.1)."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import time
from pathlib import Path

from .jobs.exit_codes import EXIT_INVALID
from .jobs.gc_tuning import tune_gc_for_run


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with `command`, only that command's options are added.

    The options of `simulate`, `export`, `report` and `bench` live in their modules: importing all of
    them would slow every call down by tens of milliseconds.
    """
    parser = argparse.ArgumentParser(
        prog="tokenflow",
        description="Send many requests to OpenAI-compatible APIs, with crash-safe results and a live dashboard.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def wanted(name: str) -> bool:
        return command is None or command == name

    run = commands.add_parser("run", help="run a job (the dashboard on a terminal); a rerun resumes")
    run.add_argument("job", type=Path, metavar="JOB.toml")
    run.add_argument("--headless", action="store_true", help="plain progress lines, even on a terminal")
    run.add_argument("--workers", type=_positive_int, metavar="N", help="start with N workers")
    run.add_argument("--output", type=Path, metavar="DIR", help="write the run here instead of the job's output")
    run.add_argument("--restart", action="store_true", help="discard earlier progress of this output (kept aside)")
    run.add_argument("--retry-failed", action="store_true", help="queue again the requests whose last record failed")

    validate = commands.add_parser("validate", help="check a job and its input without sending anything")
    validate.add_argument("job", type=Path, metavar="JOB.toml")

    simulate = commands.add_parser("simulate", help="serve the built-in OpenAI-compatible simulator")
    if wanted("simulate"):
        from .sim import cli as sim_cli

        sim_cli.add_arguments(simulate)

    export = commands.add_parser("export", help="one line per input request, in input order")
    if wanted("export"):
        from .jobs import export as export_module

        export_module.add_export_arguments(export)

    report = commands.add_parser("report", help="counts, failures by kind, tokens, latency")
    if wanted("report"):
        from .jobs import report as report_module

        report_module.add_report_arguments(report)

    bench = commands.add_parser("bench", help="measure this machine: engine overhead, HTTP cost per request")
    if wanted("bench"):
        from .bench import cli as bench_cli

        bench_cli.add_arguments(bench)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # the first word that is not an option names the command (the top level has no option with a value)
    parser = build_parser(next((word for word in argv if not word.startswith("-")), None))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "run":
        return run_command(args)
    if args.command == "validate":
        return validate_command(args)
    if args.command == "simulate":
        from .sim import cli as sim_cli

        return sim_cli.run(args)
    if args.command == "bench":
        from .bench import cli as bench_cli

        return bench_cli.run(args)
    if args.command == "export":
        from .jobs import export as export_module

        return export_module.export_command(args)
    from .jobs import report as report_module

    return report_module.report_command(args)


def _print_problems(error) -> None:
    for line in error.lines():
        print(line, file=sys.stderr)


def validate_command(args: argparse.Namespace) -> int:
    from .jobs.config import load_job
    from .jobs.describe import describe
    from .jobs.handler_loader import load_handler
    from .jobs.inputs import scan_input
    from .jobs.problems import JobError

    try:
        job = load_job(args.job)
        summary = scan_input(job)
        if job.handler is not None:
            load_handler(job)
    except JobError as error:
        _print_problems(error)
        return EXIT_INVALID
    print(f"{args.job}: valid")
    for line in describe(job, summary):
        print(f"  {line}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from .jobs.config import load_job
    from .jobs.problems import JobError
    from .jobs.run_open import RunError
    from .jobs.runner import JobRunner

    try:
        job = load_job(args.job)
    except JobError as error:
        _print_problems(error)
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
        _print_problems(error)
        return EXIT_INVALID
    except RunError as error:
        print(f"tokenflow run: {error}", file=sys.stderr)
        return EXIT_INVALID
    tune_gc_for_run()
    if interactive:
        from .ui import run_dashboard

        try:
            return run_dashboard(runner)
        finally:
            runner.close()
    from .jobs.headless import run_headless

    return asyncio.run(run_headless(runner, sys.stderr))


def _set_aside(output: Path, ask: bool) -> bool:
    """Move an output's earlier progress aside for --restart (asking first on a terminal)."""
    files = [output / name for name in ("results.jsonl", "state.toml") if (output / name).exists()]
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

"""`tokenflow run JOB.toml`: the dashboard on a terminal, plain progress lines otherwise; a rerun resumes."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..job.model import MAX_SHARDS, MAX_WORKERS, Job
from ..run.exit_codes import EXIT_DONE, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_SOME_FAILED
from .arguments import folder_path, print_problems, whole_number
from .gc_tuning import tune_gc_for_run

if TYPE_CHECKING:
    from ..cluster.driver import ClusterRun
    from ..run.control_server import HostedRun
    from ..run.runner import JobRunner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("job", type=Path, metavar="JOB.toml")
    add("--headless", action="store_true", help="plain progress lines, even on a terminal")
    add(
        "--workers", type=whole_number(1, MAX_WORKERS), metavar="N", help=f"start with N workers (1 to {MAX_WORKERS:,})"
    )
    add("--output", type=folder_path, metavar="DIR", help="write the run here instead of the job's output")
    add("--restart", action="store_true", help="discard earlier progress of this output (kept aside)")
    add("--retry-failed", action="store_true", help="queue again the requests whose last record failed")
    add(
        "--accept-changes",
        action="store_true",
        help="resume although the handler file, [request] params, model or base_url changed (never the input)",
    )
    add("--fail-on-failed", action="store_true", help="exit 3 when the run finished but some requests failed")
    add(
        "--ray",
        metavar="ADDRESS",
        help="run across a Ray cluster: auto (the cluster `ray start` made), local (one in this process), or an address",
    )
    add(
        "--shards",
        type=whole_number(1, MAX_SHARDS),
        metavar="N",
        help="with --ray: split the input into N shards (default: [cluster] shards, else one per node)",
    )
    add(
        "--detach",
        action="store_true",
        help="run headless in the background (log in OUTPUT/run.log); `tokenflow attach OUTPUT` shows it",
    )


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
    if args.detach:
        from .detach import run_detached

        return run_detached(args, job.output)
    interactive = sys.stdout.isatty() and sys.stdin.isatty() and not args.headless
    if args.ray is not None:
        return _run_on_cluster(job, args, interactive)
    if args.shards is not None:
        print("tokenflow run: --shards goes with --ray (a job split over a Ray cluster)", file=sys.stderr)
        return EXIT_INVALID
    runner = JobRunner(
        job,
        workers=args.workers,
        retry_failed=args.retry_failed,
        restart=args.restart,
        accept_changes=args.accept_changes,
        confirm=_ask if interactive else _told,
    )
    control: HostedRun = runner
    try:
        try:
            runner.open()
        except JobError as error:
            print_problems(error)
            return EXIT_INVALID
        except RunError as error:
            print(f"tokenflow run: {error}", file=sys.stderr)
            return EXIT_INVALID
        for note in runner.notes:
            print(note, file=sys.stderr)
        requeued = runner.requeued
        control = _served(runner, args)
        tune_gc_for_run()
        code = _run(control, interactive)
    except KeyboardInterrupt:
        # a signal before the front end took over signals (or after it let go): what is open is saved
        control.close()
        print("tokenflow run: interrupted; progress saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    failed = runner.snapshot().stats.failed
    if requeued and code == EXIT_DONE:
        # what a retry round did: the same failures again are the answer, not a storm to pause for
        print(
            f"retry round: {requeued:,} failed requests were queued again; {failed:,} requests end failed now",
            file=sys.stderr,
        )
    if code == EXIT_DONE and args.fail_on_failed and failed:
        return EXIT_SOME_FAILED
    return code


def _run_on_cluster(job: Job, args: argparse.Namespace, interactive: bool) -> int:
    """`run --ray`: the shards on the cluster's actors, the dashboard or the progress lines here."""
    from ..cluster import ClusterError
    from ..cluster.driver import ClusterRun, connect, saved_shards

    if args.restart:
        print("tokenflow run: --restart does not go with --ray; move the run directory aside first", file=sys.stderr)
        return EXIT_INVALID
    try:
        ray = connect(args.ray, args.shards or saved_shards(job.output) or job.cluster.shards or None)
    except ClusterError as error:
        print(f"tokenflow run: {error}", file=sys.stderr)
        return EXIT_INVALID
    try:
        run = ClusterRun(
            job,
            shards=args.shards,
            workers=args.workers,
            retry_failed=args.retry_failed,
            accept_changes=args.accept_changes,
        )
        try:
            run.open()
        except ClusterError as error:
            print(f"tokenflow run: {error}", file=sys.stderr)
            return EXIT_INVALID
        try:
            code = _run(_served(run, args), interactive)
        except KeyboardInterrupt:
            run.close()
            print("tokenflow run: interrupted; progress saved in every shard", file=sys.stderr)
            return EXIT_INTERRUPTED
    finally:
        ray.shutdown()
    if code == EXIT_DONE and args.fail_on_failed and run.snapshot().stats.failed:
        return EXIT_SOME_FAILED
    return code


def _served(runner: JobRunner | ClusterRun, args: argparse.Namespace) -> HostedRun:
    """The runner listening on its control socket (`tokenflow attach`); without one when it cannot be set up."""
    from ..run.control_server import ControlServer, ServedControl
    from ..run.control_socket import ControlSocketError

    resume = ["tokenflow", "run", str(args.job.resolve())]
    if args.output is not None:
        resume += ["--output", str(args.output.resolve())]
    if args.ray is not None:
        resume += ["--ray", args.ray]
    try:
        server = ControlServer(
            runner, runner.output_dir, {"job": str(args.job.resolve()), "resume": shlex.join(resume)}
        )
    except ControlSocketError as error:
        print(f"tokenflow run: {error}; the run goes on without attach", file=sys.stderr)
        return runner
    return ServedControl(runner, server)


def _run(runner: HostedRun, interactive: bool) -> int:
    from .headless import final_line, pause_line

    if interactive:
        from ..ui import run_dashboard

        try:
            code = run_dashboard(runner)
            snap = runner.snapshot()
        finally:
            runner.close()
        # the dashboard's screen is gone with it: what became of the run stays in the terminal
        if snap.reason and code != EXIT_DONE:
            print(pause_line(snap), file=sys.stderr)
        print(final_line(snap, code), file=sys.stderr)
        return code
    from .headless import run_headless
    from .main import catch_sigterm

    try:
        return asyncio.run(run_headless(runner, sys.stderr))
    finally:
        catch_sigterm()  # the loop gave SIGTERM back to the default (exit 143) when it let go of it


def _ask(question: str) -> bool:
    """A yes/no question on the terminal; anything but yes is no."""
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False  # the terminal closed its input: no answer is no
    return answer.strip().lower() in ("y", "yes")


def _told(question: str) -> bool:
    """Without a terminal the option given is the answer: a script cannot be asked."""
    return True

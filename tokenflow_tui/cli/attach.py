"""`tokenflow attach RUN_DIR`: the dashboard of a job another process runs (q detaches, Q ends the job).

`tokenflow watch RUN_DIR` is the same view, read-only. A run that is not running is opened from its files
(numbers, chart history, events) read-only, with how to resume it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..run.exit_codes import EXIT_INVALID
from .arguments import add_run_dir

if TYPE_CHECKING:
    from ..cluster.files import ShardFiles
    from ..job.model import Job
    from ..run.runner import JobRunner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser)


def command(args: argparse.Namespace) -> int:
    return open_dashboard(Path(args.run_dir), "attach")


def open_dashboard(output_dir: Path, mode: str) -> int:
    """The dashboard of the run in `output_dir`, attached (`mode` "attach") or watching ("watch")."""
    from ..run.control_client import ControlError, NotRunning, RemoteControl
    from ..ui import run_dashboard

    command_name = f"tokenflow {mode}"
    if not output_dir.is_dir():
        print(f"{command_name}: {output_dir}: no such folder", file=sys.stderr)
        return EXIT_INVALID
    try:
        remote = RemoteControl(output_dir, read_only=mode == "watch")
    except NotRunning as not_running:
        return _open_stopped(output_dir, command_name, str(not_running))
    except ControlError as error:
        print(f"{command_name}: {error}", file=sys.stderr)
        return EXIT_INVALID
    if mode == "attach":
        note = f"attached to {output_dir}: q detaches (the job goes on), Q ends the job"
    else:
        note = f"watching {output_dir} read-only: q leaves (the job goes on)"
    try:
        code = run_dashboard(remote, mode, note)
    finally:
        remote.close()
    if code == 0 and not remote.ended:
        print(f"detached; the job goes on: `tokenflow attach {output_dir}` shows it again", file=sys.stderr)
    return code


def _open_stopped(output_dir: Path, command_name: str, why: str) -> int:
    """The run opened from its files, read-only, when no job runs on it."""
    from ..job.problems import JobError
    from ..job.reader import load_job
    from ..run.control_server import StoppedRun
    from ..run.control_socket import read_info
    from ..run.opening import RunError
    from ..store.errors import StoreError
    from ..ui import run_dashboard

    info = read_info(output_dir) or {}
    job_file, resume = info.get("job"), info.get("resume")
    if not isinstance(job_file, str) or not isinstance(resume, str):
        print(f"{command_name}: {why}", file=sys.stderr)
        return EXIT_INVALID
    try:
        job = load_job(Path(job_file))
        job = dataclasses.replace(job, job=dataclasses.replace(job.job, output=output_dir.resolve()))
        runner = _looking_runner(job)
        runner.open()
    except (JobError, RunError, StoreError) as error:
        print(f"{command_name}: {why}; its files cannot be opened: {error}", file=sys.stderr)
        return EXIT_INVALID
    note = f"the job is not running: shown from its files; `{resume}` resumes it"
    print(f"{command_name}: {note}", file=sys.stderr)
    control = StoppedRun(runner, resume)
    try:
        run_dashboard(control, "watch", note)
    finally:
        control.close()
    return 0


def _looking_runner(job: Job) -> JobRunner | ShardFiles:
    """What opens the run's files only to look at them: its runner, or its shards' (a run across shards)."""
    from ..run.runner import JobRunner
    from ..store.shards import shard_count
    from ..store.state_file import STATE_FILE, read_state

    count = shard_count(read_state(job.output / STATE_FILE), job.output / STATE_FILE)
    if count is not None:
        from ..cluster.files import ShardFiles

        return ShardFiles(job, count)
    return JobRunner(job, confirm=lambda question: False, looking=True)

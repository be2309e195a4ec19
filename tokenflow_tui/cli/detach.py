"""`tokenflow run JOB --detach`: the same run, headless in a process of its own, its log in OUTPUT/run.log."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ..run.control_client import ControlError, find_socket
from ..run.control_socket import INFO_FILE
from ..run.exit_codes import EXIT_DONE

LOG_FILE = "run.log"
# how long the background run may take to open its output (recovery of a large results.jsonl) and listen
STARTUP_S = 120.0


def run_detached(args: argparse.Namespace, output: Path) -> int:
    """Start the run in the background, wait until it listens on its control socket, say how to attach."""
    output.mkdir(parents=True, exist_ok=True)
    log_path = output / LOG_FILE
    before = _info_stamp(output)
    with log_path.open("ab") as log, open(os.devnull, "rb") as nothing:
        start = log.tell()  # earlier runs' lines stay above this one's
        child = subprocess.Popen(
            [sys.executable, "-m", "tokenflow_tui", *_run_arguments(args)],
            stdin=nothing,
            stdout=log,
            stderr=log,
            start_new_session=True,  # the terminal's hang-up and Ctrl-C are not the background run's
        )
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            print(
                f"tokenflow run: the background run ended at once (exit {code}); its log, {log_path}:", file=sys.stderr
            )
            sys.stderr.write(_since(log_path, start))
            return code or 1
        if _info_stamp(output) != before:
            try:
                find_socket(output)
                break
            except ControlError:
                pass
        time.sleep(0.05)
    else:
        print(
            f"tokenflow run: the background run (pid {child.pid}) is not listening yet; see {log_path}", file=sys.stderr
        )
    where = shlex.quote(str(output))
    print(f"running in the background (pid {child.pid}); log in {log_path}")
    print(f"  tokenflow attach {where}   # the dashboard: q detaches, Q ends the job")
    print(f"  tokenflow watch {where}    # read-only")
    return EXIT_DONE


def _run_arguments(args: argparse.Namespace) -> list[str]:
    """The same `run` command without --detach, headless (its output is the log)."""
    words = ["run", str(args.job.resolve()), "--headless"]
    if args.workers is not None:
        words += ["--workers", str(args.workers)]
    if args.output is not None:
        words += ["--output", str(args.output.resolve())]
    flags = ("restart", "retry_failed", "accept_changes", "fail_on_failed")
    words += [f"--{flag.replace('_', '-')}" for flag in flags if getattr(args, flag)]
    return words


def _info_stamp(output: Path) -> int | None:
    """When OUTPUT/control.json was last written (a new one says the new run listens)."""
    try:
        return (output / INFO_FILE).stat().st_mtime_ns
    except OSError:
        return None


def _since(path: Path, start: int) -> str:
    """What the run wrote to its log from `start` on."""
    with path.open("rb") as log:
        log.seek(start)
        return log.read().decode(errors="replace")

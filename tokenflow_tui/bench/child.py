"""Run one measured program in a child process and read its cost from the OS.

Each measurement gets a fresh interpreter, so its CPU time and peak RSS belong to it alone; both
come from wait4(), that is from the kernel, not from the program's own account of itself.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# children import this very checkout, even when it is not the installed one
IMPORT_ROOT = str(Path(__file__).resolve().parents[2])
_POLL_S = 0.02


class BenchError(Exception):
    """A measurement could not be made; the message is a sentence for the user."""


@dataclass(frozen=True, slots=True)
class ChildRun:
    code: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # user + sys of the child (and of any children it waited for)
    peak_rss_mb: float


def run_child(argv: list[str], *, timeout_s: float, cwd: str | None = None) -> ChildRun:
    """Run `argv` to its end; BenchError if it outlives `timeout_s` (it is killed then)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [IMPORT_ROOT, env.get("PYTHONPATH")]))
    # files, not pipes: a chatty child must never block on a full pipe while we wait for it
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd, env=env)
        status, usage = _wait(process, started + timeout_s)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if usage is None:
        raise BenchError(f"{_name(argv)} did not finish within {timeout_s:g} s and was stopped")
    return ChildRun(process.returncode, stdout, stderr, wall, usage.ru_utime + usage.ru_stime, _rss_mb(usage))


def _wait(process: subprocess.Popen[bytes], deadline: float) -> tuple[int, resource.struct_rusage | None]:
    """wait4() the child, polling so that a hung one is killed at the deadline (usage None then)."""
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                return status, usage
            if time.perf_counter() >= deadline:
                break
            time.sleep(_POLL_S)
    except BaseException:  # Ctrl-C: the child is not left behind
        process.kill()
        os.wait4(process.pid, 0)
        raise
    process.kill()
    _, status, _ = os.wait4(process.pid, 0)
    return status, None


def _rss_mb(usage: resource.struct_rusage) -> float:
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS
    return usage.ru_maxrss / (1 << 20) if sys.platform == "darwin" else usage.ru_maxrss / 1024


def _name(argv: list[str]) -> str:
    return " ".join(argv[1:4])


def last_line(text: str) -> str:
    """The last non-empty line of a child's output, for an error message."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"

"""`tokenflow run` on a real terminal (a pseudo-terminal): the dashboard comes up, q then y saves and quits,
and what became of the run stays in the terminal once the dashboard's screen is gone. A real process."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from run_helpers import simulated_job

# the escape sequences of the drawn screen, so that the text can be searched
_ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[\]P^_].*?(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>]")


class Terminal:
    """A child process on a pseudo-terminal of 120×40; what it printed, with the escape sequences taken out."""

    def __init__(self, *args: str) -> None:
        self._master, slave = pty.openpty()
        os.set_blocking(self._master, False)
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
        self.child = subprocess.Popen(
            [sys.executable, "-m", "tokenflow_tui", *args], stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        self._raw = b""

    @property
    def text(self) -> str:
        return _ESCAPES.sub(b"", self._raw).decode("utf-8", "replace")

    @property
    def after_screen(self) -> str:
        """What was printed after the dashboard left the alternate screen: what stays in the terminal."""
        _, left, rest = self._raw.rpartition(b"\x1b[?1049l")
        assert left, "the alternate screen was never left"
        return _ESCAPES.sub(b"", rest).decode("utf-8", "replace")

    def read_until(self, wanted: str, limit_s: float = 60.0) -> None:
        """Read until `wanted` has been printed (at most `limit_s`, then fail)."""
        deadline = time.monotonic() + limit_s
        while wanted not in self.text:
            left = deadline - time.monotonic()
            assert left > 0 and self.child.poll() is None, f"{wanted!r} not printed in time:\n{self.text[-2000:]}"
            if select.select([self._master], [], [], min(left, 0.5))[0]:
                self._read()

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def wait(self, limit_s: float = 60.0) -> int:
        """Read the rest until the child ends (at most `limit_s`); its exit code."""
        deadline = time.monotonic() + limit_s
        while self.child.poll() is None:
            assert time.monotonic() < deadline, f"the child did not end in time:\n{self.text[-2000:]}"
            if select.select([self._master], [], [], 0.5)[0]:
                self._read()
        self._read()
        return self.child.returncode

    def close(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        os.close(self._master)

    def _read(self) -> None:
        try:
            while chunk := os.read(self._master, 65536):
                self._raw += chunk
        except (BlockingIOError, OSError):  # nothing more now, or the child closed its side
            pass


def test_q_then_y_saves_quits_and_leaves_the_runs_state_in_the_terminal(tmp_path: Path) -> None:
    job = simulated_job(tmp_path, 2_000, latency_ms=50, workers=2)
    terminal = Terminal("run", str(job))
    try:
        terminal.read_until("RUNNING")
        terminal.read_until("results → ")
        terminal.type("q")
        terminal.read_until("save and quit")
        terminal.type("y")
        code = terminal.wait()
    finally:
        terminal.close()
    assert code == 130
    last = terminal.after_screen.strip()
    assert re.fullmatch(
        rf"t: stopped with \d[\d,]* of 2,000 requests finished; progress saved in {tmp_path}/out/results.jsonl; "
        "run the same command again to resume",
        last,
    ), last

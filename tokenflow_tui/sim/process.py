"""The simulator in a child process, so that benchmarks keep its CPU apart from the client's."""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit

from .cli import config_to_args
from .config import SimulatorConfig

_KEY_ENV = "TOKENFLOW_SIM_REQUIRE_KEY"
_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0
_EXIT_GRACE_S = 2.0
_LISTENING = re.compile(r"simulator listening on (http://\S+)")
# The child must import this very checkout, even when it is not the installed one.
_IMPORT_ROOT = str(Path(__file__).resolve().parents[2])


class SimulatorProcess:
    """Runs `python -m tokenflow_tui.sim` until exit; usable with `with` or `async with`.

    The child also exits when this process dies, even by SIGKILL: it watches its stdin, which only we hold.
    """

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.host = host
        self.requested_port = port
        self.base_url = ""
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the simulator process is not started")
        return self._process.pid

    def start(self) -> None:
        """Start the child and wait for its listening line; RuntimeError if it does not come."""
        if self._process is not None:
            raise RuntimeError("the simulator process is already started")
        argv = [sys.executable, "-m", "tokenflow_tui.sim", f"--host={self.host}", f"--port={self.requested_port}"]
        argv += [*config_to_args(self.config), "--exit-on-stdin-eof"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_IMPORT_ROOT, env.get("PYTHONPATH")]))
        if self.config.require_key is not None:
            env[_KEY_ENV] = self.config.require_key
            argv += ["--require-key-env", _KEY_ENV]
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        line = self._first_line()
        match = _LISTENING.fullmatch(line.strip())
        if match is None:
            problem = self._problem(line)
            self.stop()
            raise RuntimeError(f"the simulator process did not start: {problem}")
        self.base_url = match[1]
        self.port = urlsplit(self.base_url).port or 0

    def _first_line(self) -> str:
        """The child's first line of output, or what came of it within the start timeout."""
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        received = b""
        deadline = time.monotonic() + _START_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in received:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    break
                piece = os.read(stdout.fileno(), 4096)
                if not piece:
                    break
                received += piece
        return received.decode(errors="replace")

    def _problem(self, line: str) -> str:
        assert self._process is not None and self._stderr is not None
        try:
            # A child that closed its output is exiting; give it a moment to be reaped.
            code = self._process.wait(_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            return f"no listening line within {_START_TIMEOUT_S:g} s (got {line!r})"
        self._stderr.seek(0)
        errors = self._stderr.read().decode(errors="replace").strip().splitlines()
        return f"it exited with code {code}" + (f": {errors[-1]}" if errors else "")

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL if it lingers) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stdin is not None and process.stdout is not None and self._stderr is not None
        process.stdin.close()
        process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> SimulatorProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SimulatorProcess:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

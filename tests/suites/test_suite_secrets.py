"""A marker key through every path of the other suites: it must reach no file and no output (§2.3).

The key travels only in the environment variable the job names. Each test runs the real command
line and then reads every file under the test's folder and everything the commands printed.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
from pathlib import Path

from run_helpers import start_tokenflow, tokenflow, write_input, write_job
from suite_helpers import ThreadedSimulator

from tokenflow_tui.sim import SimulatorConfig

MARKER = "sk-MARKER-n3ver-wr1te-me-0123456789abcdef"
ENV = {"TF_SECRET_KEY": MARKER}
# the key, either half of it (a cut excerpt must not keep a piece), and the header that carries it
PIECES = (MARKER.encode(), MARKER[:20].encode(), MARKER[20:].encode())
FORBIDDEN = (*PIECES, b"Bearer", b"uthorization")
ALL_FAULTS = {
    "429": 0.05,
    "500": 0.04,
    "503": 0.03,
    "reset": 0.02,
    "stall": 0.005,
    "malformed": 0.03,
    "truncated": 0.03,
    "drip": 0.005,
    "huge": 0.005,
    "ctype": 0.03,
}


def assert_no_secret(root: Path, *outputs: str, forbidden: tuple[bytes, ...] = FORBIDDEN) -> int:
    """No file under `root` and no output holds the key or an Authorization header; the files read."""
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        assert not any(word in data for word in forbidden), path
    for output in outputs:
        assert not any(word.decode() in output for word in forbidden)
    return len(files)


def remote_job(tmp_path: Path, base_url: str, count: int, **sections) -> Path:
    write_input(tmp_path / "prompts.jsonl", count)
    return write_job(
        tmp_path,
        {
            "job": {"name": "secret", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"base_url": base_url, "model": "m", "api_key_env": "TF_SECRET_KEY", "timeout_s": 0.5},
            "retry": {"max_attempts": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.02},
            **sections,
        },
    )


def every_output_of(run_dir: Path) -> list[str]:
    """What `export` and `report` print about a run."""
    export = tokenflow("export", str(run_dir), env=ENV)
    report = tokenflow("report", str(run_dir), env=ENV)
    assert export.returncode == 0 and report.returncode == 0, export.stderr + report.stderr
    return [export.stdout, export.stderr, report.stdout, report.stderr]


def test_every_fault_kind_with_the_key_required(tmp_path):
    config = SimulatorConfig(
        latency_ms=2,
        fail=ALL_FAULTS,
        require_key=MARKER,
        huge_bytes=20 << 20,
        retry_after="none",
        retry_after_ms=10,
        seed=5,
    )
    with ThreadedSimulator(config) as sim:
        job = remote_job(tmp_path, sim.base_url, 400, workers={"count": 32})
        run = tokenflow("run", str(job), "--headless", env=ENV)
        assert sim.stats.outcomes["unauthorized"] == 0  # the key did reach the server
    assert run.returncode == 0, run.stderr
    assert assert_no_secret(tmp_path, run.stdout, run.stderr, *every_output_of(tmp_path / "out")) >= 4


def test_sigkill_and_resume_with_the_key(tmp_path):
    rng = random.Random(8)
    with ThreadedSimulator(SimulatorConfig(latency_ms=2, require_key=MARKER, fail={"500": 0.05}, seed=5)) as sim:
        job = remote_job(tmp_path, sim.base_url, 6000, workers={"count": 32})
        outputs = []
        for _ in range(2):
            child = start_tokenflow("run", str(job), "--headless", env=ENV)
            time.sleep(rng.uniform(0.8, 1.5))
            child.send_signal(signal.SIGKILL)
            outputs.extend(child.communicate(timeout=30))
        final = tokenflow("run", str(job), "--headless", env=ENV)
    assert final.returncode == 0, final.stderr
    assert_no_secret(tmp_path, final.stdout, final.stderr, *outputs, *every_output_of(tmp_path / "out"))


def test_rate_limits_and_an_adaptive_worker_count_with_the_key(tmp_path):
    config = SimulatorConfig(
        latency_ms=20, require_key=MARKER, rpm_limit=100, rate_window_s=1, ratelimit_headers=True, seed=5
    )
    with ThreadedSimulator(config) as sim:
        job = remote_job(
            tmp_path,
            sim.base_url,
            300,
            workers={"count": 8, "adaptive": True, "min": 1, "max": 64},
            limits={"tokens_per_minute": 600_000},
        )
        run = tokenflow("run", str(job), "--headless", env=ENV)
        assert sim.stats.outcomes["rate_limited"] > 0
    assert run.returncode == 0, run.stderr
    assert_no_secret(tmp_path, run.stdout, run.stderr, *every_output_of(tmp_path / "out"))


class EchoingProxy:
    """A server that repeats the request's Authorization header in its error bodies, as a badly
    behaved proxy might: 500s first, then 401s (which pause the job)."""

    def __init__(self, errors_before_401: int) -> None:
        self._left = errors_before_401
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.base_url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
                await reader.readexactly(int(headers.get(b"content-length", b"0")))
                auth = headers.get(b"authorization", b"").decode()
                self._left -= 1
                status = b"500 Internal Server Error" if self._left >= 0 else b"401 Unauthorized"
                body = json.dumps(
                    {
                        "error": {"message": f"upstream refused the request with Authorization: {auth}"},
                        "request_headers": {"Authorization": auth},
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def __enter__(self) -> EchoingProxy:
        self._thread.start()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", 0)

        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        self.base_url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_a_proxy_that_echoes_the_key_in_errors_and_a_refusal(tmp_path):
    with EchoingProxy(errors_before_401=40) as proxy:
        # one attempt each: every echoing 500 is a failed request's final record
        job = remote_job(tmp_path, proxy.base_url, 200, workers={"count": 4}, retry={"max_attempts": 1})
        run = tokenflow("run", str(job), "--headless", env=ENV)
    assert run.returncode == 1, run.stderr  # the refused key paused the job
    assert (
        "paused: the server refused the key (401: HTTP 401: upstream refused the request with Authorization: "
        "Bearer [api key]); check the key in $TF_SECRET_KEY, then resume" in run.stderr
    )
    results = (tmp_path / "out" / "results.jsonl").read_text()
    assert "Authorization: Bearer [api key]" in results  # the echoed errors were kept, with the key cut out
    # the server's own words name the header; the key is what must not be there
    assert_no_secret(tmp_path, run.stdout, run.stderr, *every_output_of(tmp_path / "out"), forbidden=PIECES)


def test_a_bad_job_and_a_key_pasted_into_the_job_file(tmp_path):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": 1}\n')
    job = write_job(
        tmp_path,
        {
            "job": {"name": "secret", "input": "prompts.jsonl"},
            "endpoint": {"base_url": "https://api.example.com/v1", "model": "m", "api_key_env": "TF_SECRET_KEY"},
        },
    )
    bad_input = tokenflow("run", str(job), "--headless", env=ENV)
    assert bad_input.returncode == 2
    assert bad_input.stderr == f'{tmp_path}/prompts.jsonl:1:1: "prompt" must be a string, found an integer\n'
    pasted = write_job(
        tmp_path,
        {
            "job": {"name": "secret", "input": "prompts.jsonl"},
            "endpoint": {"base_url": "https://api.example.com/v1", "model": "m", "api_key_env": MARKER},
        },
        name="pasted.toml",
    )
    run = tokenflow("run", str(pasted), "--headless", env=ENV)
    validate = tokenflow("validate", str(pasted), env=ENV)
    assert run.returncode == validate.returncode == 2
    assert MARKER not in run.stderr + validate.stderr and "never goes in the job file" in run.stderr
    (tmp_path / "pasted.toml").unlink()  # the one file that holds the key is the user's own
    assert_no_secret(tmp_path, bad_input.stdout, bad_input.stderr, run.stdout, validate.stdout)


def test_the_control_socket_carries_no_key(tmp_path):
    """Every answer of a running job's control socket, read raw: the snapshot, rows, trajectories, failures."""
    import socket as sockets

    from tokenflow_tui.run.control_client import find_socket
    from tokenflow_tui.run.control_wire import encode

    with ThreadedSimulator(SimulatorConfig(latency_ms=50, require_key=MARKER, fail={"500": 0.2}, seed=5)) as sim:
        job = remote_job(tmp_path, sim.base_url, 3000, workers={"count": 8})
        child = start_tokenflow("run", str(job), "--headless", env=ENV)
        try:
            out = tmp_path / "out"
            for _ in range(600):  # bounded: 30 s for the run to listen and finish a few requests
                if (out / "control.sock").exists() and sim.requests() > 50:
                    break
                time.sleep(0.05)
            questions = [("snapshot", []), ("rows", ["all", 0, 200]), ("failed_groups", [])]
            questions += [("trajectory", [i]) for i in range(20)]
            with sockets.socket(sockets.AF_UNIX) as sock:
                sock.connect(str(find_socket(out)))
                answers = sock.makefile("rb")
                said = b""
                for op, args in questions:
                    sock.sendall(encode({"op": op, "args": args}))
                    said += answers.readline()
            assert said.count(b'{"ok":') == len(questions)
            assert b'"attempts"' in said or b'"params"' in said  # trajectories were in it
            assert not any(word in said for word in FORBIDDEN)
        finally:
            child.send_signal(signal.SIGTERM)
            outputs = child.communicate(timeout=30)
    assert_no_secret(tmp_path, *outputs)

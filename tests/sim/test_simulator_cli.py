"""`tokenflow simulate` and SimulatorProcess: options, errors, and real child processes."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tokenflow_tui.sim import SimulatorConfig, SimulatorProcess
from tokenflow_tui.sim.cli import add_arguments, config_from_args, config_to_args, main, run

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"simulator listening on http://127\.0\.0\.1:(\d+)/v1\n")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenflow simulate")
    add_arguments(parser)
    return parser


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_command_serves_until_a_signal_then_exits_0(signum: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "tokenflow_tui.sim", "--port", "0", "--latency-ms", "0", "--fail", "500=1"]
    argv += ["--model", "cli-model"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as child:
        try:
            assert child.stdout is not None
            match = LISTENING.fullmatch(child.stdout.readline().decode())
            assert match is not None
            base_url = f"http://127.0.0.1:{match[1]}/v1"
            with httpx.Client(timeout=5) as client:
                assert client.get(f"{base_url}/models").json()["data"][0]["id"] == "cli-model"
                body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
                assert client.post(f"{base_url}/chat/completions", json=body).status_code == 500
            child.send_signal(signum)
            out, err = child.communicate(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
    assert (child.returncode, out, err) == (0, b"", b"")


def test_a_bad_fail_option_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parser().parse_args(["--fail", "429=0.5,bogus=0.1"])) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "tokenflow simulate: --fail: unknown fault kind 'bogus'; "
        "valid kinds: 429, 500, 503, reset, stall, malformed, truncated, drip, huge, ctype, no_done, length, non_json\n"
    )


def test_a_missing_key_variable_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKENFLOW_TEST_ABSENT_KEY", raising=False)
    assert main(["--require-key-env", "TOKENFLOW_TEST_ABSENT_KEY"]) == 2
    assert capsys.readouterr().err == (
        "tokenflow simulate: --require-key-env: the environment variable TOKENFLOW_TEST_ABSENT_KEY is not set\n"
    )


def test_a_busy_port_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    assert capsys.readouterr().err == f"tokenflow simulate: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_options_default_to_the_config_defaults() -> None:
    assert config_from_args(parser().parse_args([]), environ={}) == SimulatorConfig()


def test_a_config_round_trips_through_the_options() -> None:
    config = SimulatorConfig(
        latency_ms=12.5,
        jitter_ms=3,
        fail={"429": 0.1, "drip": 0.2},
        seed=7,
        retry_after="date",
        retry_after_ms=40,
        stall_s=1.5,
        drip_interval_ms=7,
        token_interval_ms=2.5,
        huge_bytes=1000,
        rpm_limit=30,
        model="m2",
        json_answers=True,
    )
    assert config_from_args(parser().parse_args(config_to_args(config)), environ={}) == config
    keyed = parser().parse_args(["--require-key-env", "SIM_KEY"])
    assert config_from_args(keyed, environ={"SIM_KEY": "sk-1"}).require_key == "sk-1"


def test_simulator_process_serves_from_a_child_and_keeps_the_key_off_its_command_line() -> None:
    config = SimulatorConfig(latency_ms=0, require_key="sk-proc-secret", model="proc-model")
    with SimulatorProcess(config) as sim:
        child = psutil.Process(sim.pid)
        assert sim.pid != os.getpid()
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/v1"
        assert "sk-proc-secret" not in " ".join(child.cmdline())
        with httpx.Client(timeout=5) as client:
            assert client.get(f"{sim.base_url}/models").status_code == 401
            listed = client.get(f"{sim.base_url}/models", headers={"Authorization": "Bearer sk-proc-secret"})
            assert listed.json()["data"][0]["id"] == "proc-model"
    assert not child.is_running()


async def test_simulator_process_works_as_an_async_context_manager() -> None:
    async with SimulatorProcess(SimulatorConfig(latency_ms=0)) as sim:
        child = psutil.Process(sim.pid)
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(f"{sim.base_url}/completions", json={"model": "m", "prompt": "from a child"})
        assert response.json()["choices"][0]["text"] == "Echo: from a child"
    assert not child.is_running()


def test_simulator_process_reports_a_child_that_cannot_listen() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError) as raised:
            SimulatorProcess(SimulatorConfig(), port=port).start()
    assert str(raised.value) == (
        f"the simulator process did not start: it exited with code 1: "
        f"tokenflow simulate: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_the_child_exits_when_its_parent_is_killed() -> None:
    script = (
        "import sys\n"
        "from tokenflow_tui.sim import SimulatorProcess\n"
        "sim = SimulatorProcess()\n"
        "sim.start()\n"
        "print(sim.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    ) as parent:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        try:
            assert child.is_running()
            parent.kill()
            parent.wait()
            child.wait(timeout=10)  # raises psutil.TimeoutExpired if the child outlives its parent
            assert not child.is_running()
        finally:
            if child.is_running():
                child.kill()

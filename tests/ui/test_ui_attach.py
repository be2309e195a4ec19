"""The dashboard attached to a real headless run in a child process, over its control socket."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from run_helpers import simulated_job, start_tokenflow, until
from ui_fakes import NOW, SIZE, FixedLag, Notes, ScriptedRun

from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.control_client import NotRunning, RemoteControl, find_socket
from tokenflow_tui.run.control_server import StoppedRun
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.ui.app import MODES, READ_ONLY_NOTE, TokenFlowApp
from tokenflow_tui.ui.formatting import clock_time
from tokenflow_tui.ui.widgets.status import RunHeader


def dashboard(mode: str, control, note: str | None = None) -> TokenFlowApp:
    app = MODES[mode](control, clock=lambda: NOW, tz=UTC, lag_probe=FixedLag(), note=note)
    app.animation_level = "none"
    return app


async def listening(out: Path, child: subprocess.Popen[str]) -> None:
    """Until the child's run answers on its control socket (bounded: 30 s)."""
    for _ in range(600):
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        with contextlib.suppress(NotRunning):
            find_socket(out)
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run did not listen on its control socket")


def state_toml(out: Path) -> dict:
    try:
        return tomllib.loads((out / "state.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


@pytest.fixture
def job(tmp_path: Path) -> Path:
    # 100 ms an answer through 4 workers: about 40 requests a second, minutes of work
    return simulated_job(tmp_path, 5_000, latency_ms=100, workers=4)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


async def test_attach_pauses_detaches_and_a_second_attach_ends_the_job(job, children) -> None:
    out = job.parent / "out"
    child = start_tokenflow("run", str(job), "--headless")
    children.append(child)
    await listening(out, child)

    remote = RemoteControl(out)
    notes = Notes()
    app = dashboard("attach", remote)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await until(lambda: remote.snapshot().state == "running" and remote.snapshot().stats.done > 0, 6000)
        await pilot.press("p")
        await until(lambda: state_toml(out).get("paused") is True, 6000)
        assert remote.snapshot().state == "paused"
        await pilot.press("q")
    assert app.return_value == 0
    assert child.poll() is None  # detached: the job goes on (paused, as it was left)
    remote.close()

    again = RemoteControl(out)
    app = dashboard("attach", again)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await pilot.pause()
        assert "PAUSED" in app.main_screen.query_one(RunHeader).render().plain
        await pilot.press("p")
        await until(lambda: again.snapshot().state == "running", 6000)
        await pilot.press("Q")  # end the job: it saves and exits, and the view with it
        await until(lambda: app.return_value is not None, 6000)
    assert app.return_value == 130  # not every request finished
    assert child.wait(30) == 130
    _, stderr = child.communicate()
    assert "progress saved" in stderr
    assert not (out / "control.sock").exists()
    assert state_toml(out)["done"] > 0
    assert "pausing: " in notes[0] and "saving and quitting" in notes[-1]


async def test_watch_refuses_steering_and_a_killed_run_leaves_a_socket_the_next_replaces(job, children) -> None:
    out = job.parent / "out"
    child = start_tokenflow("run", str(job), "--headless")
    children.append(child)
    await listening(out, child)

    remote = RemoteControl(out, read_only=True)
    notes = Notes()
    app = dashboard("watch", remote)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await until(lambda: remote.snapshot().state == "running", 6000)
        workers = remote.snapshot().stats.target_workers
        for key in ("p", "x", "plus", "s", "Q", "l"):
            await pilot.press(key)
        await pilot.pause()
        assert notes == [READ_ONLY_NOTE] * 6
        snapshot = remote.snapshot()
        assert (snapshot.state, snapshot.stats.target_workers) == ("running", workers)
        await pilot.press("q")
    assert app.return_value == 0 and child.poll() is None
    remote.close()

    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert (out / "control.sock").is_socket()  # left behind by the killed run
    with pytest.raises(NotRunning, match="the job is not running"):
        find_socket(out)

    resumed = start_tokenflow("run", str(job), "--headless")
    children.append(resumed)
    await listening(out, resumed)
    assert RemoteControl(out).snapshot().state in ("starting", "running")
    resumed.send_signal(signal.SIGTERM)
    assert resumed.wait(30) == 130


async def test_a_run_that_is_not_running_is_shown_from_its_files(job, children) -> None:
    out = job.parent / "out"
    child = start_tokenflow("run", str(job), "--headless")
    children.append(child)
    await listening(out, child)
    await until(lambda: RemoteControl(out).snapshot().stats.done >= 20, 6000)
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 130
    saved, saved_at = state_toml(out)["done"], state_toml(out)["saved_at"]
    files_before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}

    runner = JobRunner(load_job(job), confirm=lambda question: False, looking=True)
    runner.open()
    stopped = StoppedRun(runner, "tokenflow run job.toml")
    notes = Notes()
    app = dashboard("watch", stopped, note="the job is not running: `tokenflow run job.toml` resumes it")
    try:
        async with app.run_test(size=SIZE, message_hook=notes) as pilot:
            await until(lambda: app.run_code is not None)
            await pilot.pause()
            assert app.run_code == 130
            assert stopped.snapshot().stats.done == saved
            header = app.main_screen.query_one(RunHeader).render().plain
            assert header.startswith("t   PAUSED    elapsed 0:0")
            assert f"saved {clock_time(saved_at, UTC)}" in header
            assert header.endswith("⚠ the job is not running: `tokenflow run job.toml` resumes it")
            await pilot.press("p")
            await pilot.pause()
    finally:
        stopped.close()
    assert notes == ["the job is not running: `tokenflow run job.toml` resumes it", READ_ONLY_NOTE]
    # looking changed nothing: no "resumed" event, no save (the lock file comes and goes)
    files_after = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    assert {name: files_after.get(name) for name in files_before if name != ".lock"} == {
        name: content for name, content in files_before.items() if name != ".lock"
    }


async def test_the_dashboard_of_tokenflow_run_listens_too(tmp_path: Path) -> None:
    """The job's own dashboard serves its socket on the app's loop: a view elsewhere reads and steers the same run."""
    from tokenflow_tui.run.control_server import ControlServer, ServedControl

    runner = JobRunner(load_job(simulated_job(tmp_path, 5_000, latency_ms=100, workers=4)))
    runner.open()
    served = ServedControl(runner, ControlServer(runner, runner.output_dir, {"resume": "tokenflow run job.toml"}))
    app = dashboard("run", served)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: runner.snapshot().state == "running", 6000)
            remote = await asyncio.to_thread(RemoteControl, runner.output_dir)
            assert (await asyncio.to_thread(remote.snapshot)).state == "running"
            assert await asyncio.to_thread(remote.set_workers, 6) is None
            assert runner.snapshot().stats.target_workers == 6
            await remote.pause()  # on its own connection, on this loop: the dashboard stays up meanwhile
            assert runner.snapshot().state == "paused"
            await pilot.press("p")  # the local keys still drive it
            await until(lambda: runner.snapshot().state == "running", 6000)
            remote.close()
            await pilot.press("x")
            await until(lambda: runner.snapshot().state == "paused", 6000)
    finally:
        served.close()
    assert not (runner.output_dir / "control.sock").exists()


def shown_keys(app: TokenFlowApp) -> dict[str, str]:
    """The keys the footer shows, with their words."""
    return {
        key: active.binding.description for key, active in app.screen.active_bindings.items() if active.binding.show
    }


async def test_attached_keys_q_detaches_and_capital_q_ends_the_job() -> None:
    run = ScriptedRun()
    app = dashboard("attach", run)
    async with app.run_test(size=SIZE) as pilot:
        keys = shown_keys(app)
        assert (keys["q"], keys["Q"], keys["p"], keys["s"]) == ("detach", "end job", "pause/resume", "save")
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0 and [call for call in run.calls if call != ("run",)] == []

    run = ScriptedRun()
    app = dashboard("attach", run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("Q")
        await until(lambda: app.return_value is not None)
    assert app.return_value == 130 and ("shutdown",) in run.calls


async def test_watching_keys_show_no_steering() -> None:
    run = ScriptedRun()
    app = dashboard("watch", run)
    notes = Notes()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        keys = shown_keys(app)
        assert not {"p", "x", "s", "Q", "l", "b", "t", "plus"} & set(keys)
        assert keys["q"] == "detach" and {"question_mark", "f", "enter", "e"} <= set(keys)
        await pilot.press("f", "r")  # the failed browser: queueing again is refused too
        await pilot.pause()
        assert type(app.screen).__name__ == "FailedScreen"
        assert notes == ["watching read-only: `tokenflow attach` queues requests again"]
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert app.return_value == 0 and [call for call in run.calls if call != ("run",)] == []

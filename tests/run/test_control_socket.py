"""The control socket: the contract's dataclasses over the wire, the socket's place and mode, the client's calls."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from ui_fakes import ACTIVE_TRAFFIC, ENDPOINTS, RULE_LINES, ScriptedRun

from tokenflow_tui.run.contract import RequestRow, RunEvent, RunSnapshot, SaveReport, SearchStatus, SortStatus
from tokenflow_tui.run.control_client import ControlError, NotRunning, ReadOnly, RemoteControl, find_socket
from tokenflow_tui.run.control_server import ControlServer, ServedControl
from tokenflow_tui.run.control_socket import INFO_FILE, SOCKET_FILE, ControlSocketError, bind, read_info, socket_path
from tokenflow_tui.run.control_wire import build, decode, encode


def rich_run() -> ScriptedRun:
    """A run whose snapshot has every part filled in: traffic, events, costs, time to first token."""
    run = ScriptedRun()
    run.traffic = ACTIVE_TRAFFIC
    run.events = (RunEvent(1.5, "pause", "paused: the budget is spent"), RunEvent(2.0, "open", "resumed", True))
    run.cost = (0.42, 0.03, 1.9)
    run.ttft_s = (0.1, 0.2, 0.3)
    run.rules = RULE_LINES
    run.endpoints = ENDPOINTS
    return run


def test_a_snapshot_comes_back_as_the_same_dataclasses() -> None:
    original = rich_run().snapshot()
    sent = encode({"ok": original})
    assert sent.endswith(b"\n") and sent.count(b"\n") == 1  # one message, one line
    back = build(RunSnapshot, decode(sent)["ok"])
    # the wire has lists where the run had tuples; everything else is equal, field by field, class by class
    as_lists = {name: list(getattr(original, name)) for name in ("history", "events", "rules", "endpoints")}
    assert back == dataclasses.replace(original, **as_lists)
    assert {type(line).__name__ for line in (*back.rules, *back.endpoints)} == {"RuleLine", "EndpointView"}
    assert type(back.stats) is type(original.stats) and type(back.traffic) is type(original.traffic)
    assert {type(point).__name__ for point in back.history} == {"ChartPoint"}
    assert back.events[1] == RunEvent(2.0, "open", "resumed", True)
    assert back.history[0].errors == original.history[0].errors
    assert back.results_path == "runs/demo/results.jsonl"  # properties work on what came back


def test_rows_and_a_save_report_come_back_equal() -> None:
    run = ScriptedRun()
    rows = run.rows("all", 0, 60)
    assert build(list[RequestRow], decode(encode({"ok": rows}))["ok"]) == rows
    report = SaveReport(12, "out/results.jsonl", 1_700_000_000.5)
    assert build(SaveReport, decode(encode({"ok": report}))["ok"]) == report


def test_the_socket_is_the_owners_only_and_a_stale_one_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / SOCKET_FILE
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # as a run killed with -9 leaves it: the file, nobody listening
    sock = bind(path)
    try:
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(path))  # the new socket listens
        probe.close()
        with pytest.raises(ControlSocketError, match="another run listens on this control socket"):
            bind(path)
    finally:
        sock.close()


def test_a_file_in_the_sockets_place_is_not_removed(tmp_path: Path) -> None:
    (tmp_path / SOCKET_FILE).write_text("mine")
    with pytest.raises(ControlSocketError, match="exists and is not a socket"):
        bind(tmp_path / SOCKET_FILE)
    assert (tmp_path / SOCKET_FILE).read_text() == "mine"


def test_a_deep_output_gets_its_socket_in_a_private_short_folder(tmp_path: Path, monkeypatch) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short, as $XDG_RUNTIME_DIR is (/run/user/1000)
    try:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        deep = tmp_path / ("d" * 60) / ("e" * 60)
        deep.mkdir(parents=True)
        path = socket_path(deep)
        assert path.parent == runtime / f"tokenflow-{os.getuid()}"
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert len(os.fsencode(path)) <= 107 and path == socket_path(deep)  # the same output, the same socket
        sock = bind(path)  # a socket there works like one in the output
        sock.close()
        # a folder of someone else's (or open to others) is not used
        os.chmod(path.parent, 0o755)
        assert socket_path(deep).parent != runtime / f"tokenflow-{os.getuid()}"
    finally:
        shutil.rmtree(runtime)
    assert socket_path(tmp_path) == tmp_path.resolve() / SOCKET_FILE


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ScriptedRun, Path, asyncio.AbstractEventLoop, ServedControl]]:
    """A scripted run served on its control socket by a loop in a thread (as a job's loop in its process)."""
    run = rich_run()
    run.close = lambda: None  # type: ignore[attr-defined]
    loop = asyncio.new_event_loop()
    control = ServedControl(run, ControlServer(run, tmp_path, {"resume": "tokenflow run job.toml"}))  # type: ignore[arg-type]
    # the loop goes on after the run returns, as a job's does until its process exits
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(control.run(), loop)
    asyncio.run_coroutine_threadsafe(until_listening(control.server.path), loop).result(10)
    yield run, tmp_path, loop, control
    loop.call_soon_threadsafe(run.finish, 0)
    running.result(10)
    loop.call_soon_threadsafe(control.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def until_listening(path: Path) -> None:
    for _ in range(200):
        if path.exists():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the socket did not appear")


def test_the_client_reads_and_steers_the_served_run(served) -> None:
    run, out, loop, _ = served
    remote = RemoteControl(out)
    assert orjson.dumps(remote.snapshot()) == orjson.dumps(run.snapshot())
    assert remote.rows("failed", 0, 3) == run.rows("failed", 0, 3)
    assert remote.row_count("in_flight") == 64 and remote.failed_groups() == run.failed_groups()
    assert remote.trajectory(7) == run.trajectory(7)
    assert remote.set_workers(0) == "at 1 worker already"
    assert remote.retry([7, 8]) == 1

    async def controls() -> tuple[SaveReport, int]:
        await remote.pause()
        return await remote.save(), run.state

    report, state = asyncio.run(controls())
    assert (report.results, state) == (1_200, "paused")
    steering = [call for call in run.calls if call[0] != "run"]
    assert steering == [("set_workers", 0), ("retry", (7, 8)), ("pause",), ("save",)]
    assert read_info(out) == {
        "socket": str(out.resolve() / SOCKET_FILE),
        "resume": "tokenflow run job.toml",
    }
    remote.close()


def test_the_sort_and_the_search_reach_the_run_and_come_back_as_they_were(served) -> None:
    run, out, _, _ = served
    asked: list[tuple[Any, ...]] = []

    def rows(row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        asked.append((row_filter, start, stop, sort))
        return []

    run.rows = rows  # type: ignore[method-assign]
    run.sort_status = lambda sort: SortStatus(sort, ready=False, building=True, done=3, total=7)  # type: ignore[attr-defined]
    run.search = lambda query: SearchStatus(query, 10, 2_000, 1, False)  # type: ignore[attr-defined]
    run.search_status = lambda: SearchStatus("doc-1", 2_000, 2_000, 4, True)  # type: ignore[attr-defined]
    run.find = lambda position, direction, row_filter, sort: (position, direction, row_filter, sort).__len__()  # type: ignore[attr-defined]
    remote = RemoteControl(out)
    assert remote.rows("all", 0, 5, "latency") == []
    assert asked == [("all", 0, 5, "latency")]
    assert remote.sort_status("tokens") == SortStatus("tokens", ready=False, building=True, done=3, total=7)
    assert remote.search("doc-1") == SearchStatus("doc-1", 10, 2_000, 1, False)
    assert remote.search_status() == SearchStatus("doc-1", 2_000, 2_000, 4, True)
    assert remote.find(3, -1, "failed", "attempts") == 4
    remote.close()


def test_a_failing_call_is_a_sentence_and_the_run_goes_on(served) -> None:
    run, out, _, _ = served

    def broken(index: int) -> list[dict[str, Any]]:
        raise KeyError(index)

    run.trajectory = broken  # type: ignore[method-assign]
    remote = RemoteControl(out)
    with pytest.raises(ControlError, match="the job refused trajectory: KeyError: 3"):
        remote.trajectory(3)
    assert remote.row_count() == 2_000


def test_a_watching_client_refuses_to_steer(served) -> None:
    run, out, _, _ = served
    remote = RemoteControl(out, read_only=True)
    with pytest.raises(ReadOnly, match="watching read-only"):
        remote.set_workers(3)
    with pytest.raises(ReadOnly):
        asyncio.run(remote.pause())
    assert remote.snapshot().stats.workers == 64
    assert [call for call in run.calls if call[0] != "run"] == []


def test_the_client_waits_for_the_end_of_the_run(served) -> None:
    run, out, loop, control = served
    remote = RemoteControl(out)
    before = remote.snapshot()

    async def wait() -> int:
        waiting = asyncio.ensure_future(remote.run())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        loop.call_soon_threadsafe(run.finish, 3)
        return await asyncio.wait_for(waiting, 10)

    assert asyncio.run(wait()) == 3 and remote.ended
    assert before.state == "running"
    last = remote.snapshot()
    rows = remote.rows("all", 0, 5)
    closed = threading.Event()
    loop.call_soon_threadsafe(lambda: (control.close(), closed.set()))
    assert closed.wait(10)
    # the job's process is gone once its run is over: what it said last stays, without an error
    assert remote.snapshot() == last and remote.rows("all", 0, 5) == rows and remote.row_count("failed") == 0


def test_no_run_listening_is_said(tmp_path: Path) -> None:
    with pytest.raises(NotRunning, match="no tokenflow run has listened here"):
        find_socket(tmp_path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / SOCKET_FILE))
    stale.close()
    (tmp_path / INFO_FILE).write_bytes(orjson.dumps({"socket": str(tmp_path / SOCKET_FILE)}))
    with pytest.raises(NotRunning, match="the job is not running"):
        RemoteControl(tmp_path)


def test_a_handlers_odd_values_still_go_over_the_wire() -> None:
    attempts = [{"result": {1: "one", "when": Path("/x")}, "latency_ms": 3.5}]
    assert decode(encode({"ok": attempts}))["ok"] == [{"result": {"1": "one", "when": "/x"}, "latency_ms": 3.5}]


def test_an_output_where_control_json_cannot_be_written_leaves_no_socket(tmp_path: Path) -> None:
    (tmp_path / INFO_FILE).mkdir()  # in the way, as a full or read-only disk would be
    with pytest.raises(ControlSocketError, match=r"control.json: cannot write \(Is a directory\)"):
        ControlServer(ScriptedRun(), tmp_path, {})  # type: ignore[arg-type]
    assert not (tmp_path / SOCKET_FILE).exists() and not (tmp_path / f"{INFO_FILE}.part").exists()

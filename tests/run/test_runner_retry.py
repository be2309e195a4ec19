"""Failed requests queued again once the run has ended: the runner runs one more round, and the
dashboard leaves its summary, runs them and shows the summary again."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
import run_helpers
from run_helpers import read_records, until, write_job
from textual.message import Message
from textual.notifications import Notify

from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.contract import SaveReport
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.store.export import export_results
from tokenflow_tui.store.report import build_report
from tokenflow_tui.ui import TokenFlowApp
from tokenflow_tui.ui.screens.failed import FailedScreen

# a request with "flaky" fails on its first attempt in this process; later ones wait for GATE, then answer
FLAKY_HANDLER = """
import run_helpers
from tokenflow import ActionDone

TRIED = set()


async def handler(trajectory):
    params = trajectory.last().request_params
    if params.get("flaky") and params["prompt"] not in TRIED:
        TRIED.add(params["prompt"])
        raise RuntimeError("first try of " + params["prompt"] + " fails")
    if params.get("flaky"):
        await run_helpers.GATE.wait()
    return ActionDone(), {"echo": params["prompt"]}
"""
LINES = [{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "two", "flaky": True}, {"id": "c", "prompt": "three"}]
DEADLINE_S = 10.0


def flaky_job(directory: Path, handler_module: str) -> Path:
    # a module name of its own per test: the handler's TRIED must start empty
    (directory / f"{handler_module}.py").write_text(FLAKY_HANDLER)
    with (directory / "in.jsonl").open("w") as out:
        for line in LINES:
            out.write(json.dumps(line) + "\n")
    return write_job(
        directory,
        {
            "job": {"name": "flaky", "input": "in.jsonl", "output": "out"},
            "handler": {"path": f"{handler_module}.py:handler"},
            "workers": {"count": 2},
        },
    )


@pytest.fixture
def gate() -> asyncio.Event:
    run_helpers.GATE.event = asyncio.Event()
    return run_helpers.GATE.event


def statuses(results: Path) -> list[tuple[int, str]]:
    return [(r["index"], r["status"]) for r in read_records(results)]


async def test_a_retry_after_run_returned_runs_again_and_appends_the_new_record(
    tmp_path: Path, gate: asyncio.Event
) -> None:
    gate.set()
    runner = JobRunner(load_job(flaky_job(tmp_path, "flaky_runner")), save_interval_s=3600)
    runner.open()
    results = tmp_path / "out" / "results.jsonl"
    try:
        assert await asyncio.wait_for(runner.run(), DEADLINE_S) == 0
        assert runner.failed_groups() == {"handler_exception": [1]}
        assert runner.retry([0, 1]) == 1  # 0 is done: only 1 is queued again
        snap = runner.snapshot()
        assert (snap.stats.done, snap.stats.failed, snap.stats.queued, snap.failed_by_kind) == (2, 0, 1, {})
        assert runner.rows("all", 1, 2)[0].state == "queued"

        assert await asyncio.wait_for(runner.run(), DEADLINE_S) == 0
        assert sorted(statuses(results)) == [(0, "done"), (1, "done"), (1, "failed"), (2, "done")]
        assert statuses(results)[-1] == (1, "done")  # appended after the first round's records
        snap = runner.snapshot()
        assert (snap.state, snap.stats.done, snap.stats.failed, snap.stats.queued) == ("done", 3, 0, 0)
        assert snap.stats.attempts == 4  # both rounds
        assert runner.failed_groups() == {}
        row = runner.rows("all", 1, 2)[0]
        assert (row.id, row.state, row.attempts, row.preview) == ("b", "done", 1, "{'echo': 'two'}")
        assert [a["result"] for a in runner.trajectory(1)] == [{"echo": "two"}]
        assert "done = 3" in (tmp_path / "out" / "state.toml").read_text()
    finally:
        runner.close()
    # export and report take the last record of each request
    out = io.StringIO()
    export_results(tmp_path / "out", out)
    assert [(r["index"], r["status"]) for r in map(json.loads, out.getvalue().splitlines())] == [
        (0, "done"),
        (1, "done"),
        (2, "done"),
    ]
    report = build_report(tmp_path / "out")
    assert (report.done, report.failed, report.records) == (3, 0, 4)


async def test_a_retry_while_the_ended_run_saves_runs_before_run_returns(tmp_path: Path, gate: asyncio.Event) -> None:
    gate.set()
    runner = JobRunner(load_job(flaky_job(tmp_path, "flaky_late")), save_interval_s=3600)
    runner.open()
    asked = []
    save = runner.save

    async def save_then_retry() -> SaveReport:
        report = await save()
        if not asked:  # r pressed while run() saves the end of the run, before it returns
            asked.append((runner.snapshot().state, runner.retry([1])))
        return report

    runner.save = save_then_retry  # type: ignore[method-assign]
    try:
        assert await asyncio.wait_for(runner.run(), DEADLINE_S) == 0
    finally:
        runner.close()
    assert asked == [("done", 1)]
    assert sorted(statuses(tmp_path / "out" / "results.jsonl")) == [
        (0, "done"),
        (1, "done"),
        (1, "failed"),
        (2, "done"),
    ]


class Notes(list[tuple[str, str]]):
    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.append((message.notification.severity, message.notification.message))


async def wait_for_run_end(pilot, app: TokenFlowApp) -> None:
    for worker in [w for w in app.workers if w.name == "run"]:
        await asyncio.wait_for(worker.wait(), DEADLINE_S)
    await pilot.pause()


async def test_r_in_the_failed_browser_of_a_finished_run_runs_the_request_again(
    tmp_path: Path, gate: asyncio.Event
) -> None:
    runner = JobRunner(load_job(flaky_job(tmp_path, "flaky_app")), save_interval_s=3600)
    runner.open()
    notes = Notes()
    app = TokenFlowApp(runner)
    app.animation_level = "none"
    results = tmp_path / "out" / "results.jsonl"
    try:
        async with app.run_test(size=(120, 40), message_hook=notes) as pilot:
            await wait_for_run_end(pilot, app)
            assert app.run_code == 0 and app.main_screen.has_class("-finished")
            assert statuses(results)[-1:] != [(1, "done")] and (1, "failed") in statuses(results)
            await pilot.press("f")
            await pilot.pause()
            assert isinstance(app.screen, FailedScreen)
            await pilot.press("r")
            await pilot.pause()
            assert notes[-1] == ("information", "queued 1 request again")
            # the run goes on: the summary has left, the request is in flight (held by the gate)
            await until(lambda: runner.row_count("in_flight") == 1)
            assert app.run_code is None and not app.main_screen.has_class("-finished")
            assert runner.snapshot().state == "running" and runner.rows("in_flight", 0, 1)[0].id == "b"
            gate.set()
            await wait_for_run_end(pilot, app)
            assert app.run_code == 0 and app.main_screen.has_class("-finished")
            assert app.screen.groups == {}  # nothing failed any more
            assert sorted(statuses(results)) == [(0, "done"), (1, "done"), (1, "failed"), (2, "done")]
            await pilot.press("escape")
            await pilot.pause()
            summary = app.main_screen.query_one("#summary").render().plain
            assert "exit code 0" in summary and "done 3   failed 0" in summary
            await pilot.press("q")
            await pilot.pause()
    finally:
        runner.close()
    assert app.return_value == 0
    assert [text for severity, text in notes if severity != "information"] == []

"""The dashboard hosting the real job runner: a job of a few thousand requests against the simulator,
with faults, run to the end through the app, then the same job headless; both must agree."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.notifications import Notify

from tokenflow_tui.cli.headless import run_headless
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.ui import TokenFlowApp
from tokenflow_tui.ui.screens.trajectory import TrajectoryScreen

REQUESTS = 2_000
SIZE = (120, 40)
DEADLINE_S = 60.0  # a run takes a few seconds; only a hang comes near this
# every kind of fault the built-in handler retries; with 12 attempts a request fails for good with
# a chance of 0.1^12, so both runs finish every request as done and their answers can be compared
FAULTS = {"429": 0.03, "500": 0.03, "reset": 0.02, "malformed": 0.02}
MAX_ATTEMPTS = 12


def write_job(directory: Path) -> tuple[Path, list[str]]:
    prompts = [f"tell me about item {i}" for i in range(REQUESTS)]
    with (directory / "prompts.jsonl").open("w") as out:
        for i, prompt in enumerate(prompts):
            out.write(json.dumps({"id": f"q{i}", "prompt": prompt}) + "\n")
    faults = ", ".join(f'"{kind}" = {rate}' for kind, rate in FAULTS.items())
    job = directory / "job.toml"
    job.write_text(
        '[job]\nname = "ui-integration"\ninput = "prompts.jsonl"\n\n'
        "[endpoint]\nsimulate = true\ntimeout_s = 2\n\n"
        f"[endpoint.simulator]\nlatency_ms = 5\nseed = 11\nfail = {{ {faults} }}\n\n"
        "[request]\nparams = { max_tokens = 64 }\n\n"
        "[workers]\ncount = 32\n\n"
        f"[retry]\nmax_attempts = {MAX_ATTEMPTS}\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\n"
    )
    return job, prompts


def open_runner(job_path: Path, output: Path) -> JobRunner:
    job = load_job(job_path)
    job = dataclasses.replace(job, job=dataclasses.replace(job.job, output=output))
    runner = JobRunner(job)
    runner.open()
    return runner


def final_records(output: Path) -> dict[int, dict[str, Any]]:
    """The records of results.jsonl by input index; every index must have exactly one."""
    records = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
    per_index = Counter(record["index"] for record in records)
    assert sorted(per_index) == list(range(REQUESTS))
    assert set(per_index.values()) == {1}, [i for i, n in per_index.items() if n > 1][:10]
    return {record["index"]: record for record in records}


def done_answers(records: dict[int, dict[str, Any]]) -> set[tuple[int, str, str]]:
    return {(index, r["status"], r["result"]) for index, r in records.items() if r["status"] == "done"}


class Notifications(list[tuple[str, str]]):
    """A message hook that keeps (severity, text) of every notification."""

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.append((message.notification.severity, message.notification.message))


async def run_through_the_dashboard(job_path: Path, output: Path) -> tuple[int | None, str, Notifications]:
    """Run the job in the app to its end, moving through the filters and into requests meanwhile;
    the app's exit code (after q), the summary's text and the notifications."""
    runner = open_runner(job_path, output)
    notes = Notifications()
    app = TokenFlowApp(runner)
    try:
        async with app.run_test(size=SIZE, message_hook=notes) as pilot:
            keys = ["tab", "enter", "escape"]  # the next filter, a request's trajectory, back
            deadline = time.monotonic() + DEADLINE_S
            pressed = 0
            while app.run_code is None:
                assert time.monotonic() < deadline, f"the run did not end within {DEADLINE_S:.0f} s"
                await pilot.press(keys[pressed % len(keys)])
                pressed += 1
                await pilot.pause(0.02)
            while isinstance(app.screen, TrajectoryScreen):
                await pilot.press("escape")
            await pilot.pause()
            assert app.screen is app.main_screen
            summary = app.main_screen.query_one("#summary").render().plain
            await pilot.press("q")  # after the run returned: exits at once with the run's code
            await pilot.pause()
    finally:
        runner.close()
    return app.return_value, summary, notes


async def run_headless_job(job_path: Path, output: Path) -> int:
    runner = open_runner(job_path, output)
    try:
        return await asyncio.wait_for(run_headless(runner, io.StringIO(), interval_s=60), DEADLINE_S)
    finally:
        runner.close()


async def test_a_real_job_through_the_dashboard_ends_as_it_does_headless(tmp_path: Path) -> None:
    job_path, prompts = write_job(tmp_path)

    code, summary, notes = await run_through_the_dashboard(job_path, tmp_path / "dashboard")
    records = final_records(tmp_path / "dashboard")
    done = done_answers(records)
    failed = REQUESTS - len(done)
    assert code == 0
    assert not [text for severity, text in notes if severity == "error"]
    assert "Every request has a final record.   exit code 0" in summary
    assert f"done {len(done):,}   failed {failed:,}   of {REQUESTS:,}" in summary
    # the faults happened and were retried
    assert sum(len(r["attempts"]) for r in records.values()) > REQUESTS
    for index, _status, answer in done:
        assert answer == "Echo: " + prompts[index]

    headless_code = await run_headless_job(job_path, tmp_path / "headless")
    assert headless_code == code == 0
    assert done_answers(final_records(tmp_path / "headless")) == done
    assert len(done) == REQUESTS

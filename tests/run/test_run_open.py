"""Opening an output after a crash: the counters come from results.jsonl, not from an older checkpoint."""

from __future__ import annotations

import io
from pathlib import Path

from run_helpers import simulated_job

from tokenflow_tui.cli.headless import run_headless
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.opening import open_run
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.store.export import STATE_RESULTS_KEY
from tokenflow_tui.store.results_file import recover
from tokenflow_tui.store.state_file import read_state, write_state


async def test_records_written_after_the_last_checkpoint_count_on_reopen(tmp_path: Path) -> None:
    job = load_job(simulated_job(tmp_path, 40, fail={"500": 0.3}, max_attempts=4))
    runner = JobRunner(job)
    runner.open()
    try:
        assert await run_headless(runner, io.StringIO()) == 0
    finally:
        runner.close()
    results, state_path = job.output / "results.jsonl", job.output / "state.toml"
    whole = recover(results).summary
    # a checkpoint from when only the first 25 records were in the file: what a kill -9 leaves
    head = tmp_path / "head.jsonl"
    head.write_bytes(b"".join(results.read_bytes().splitlines(keepends=True)[:25]))
    early = recover(head).summary
    state = read_state(state_path)
    state[STATE_RESULTS_KEY] = early.to_data()
    state["attempts"], state["retries"] = early.attempts, early.attempts - early.records
    state["stats"] = {
        **state["stats"],
        "prompt_tokens": early.prompt_tokens,
        "completion_tokens": early.completion_tokens,
    }
    write_state(state_path, state)
    assert whole.attempts > early.attempts and whole.prompt_tokens > early.prompt_tokens

    opened = open_run(job)
    try:
        counted = (opened.attempts, opened.retries, opened.stats.prompt_tokens, opened.stats.completion_tokens)
        assert counted == (whole.attempts, whole.attempts - whole.records, whole.prompt_tokens, whole.completion_tokens)
        assert (opened.done + opened.failed, whole.records) == (40, 40)
    finally:
        opened.close()

"""The worker cap (`[workers] max`, "up to N from the dashboard" in validate) holds for every way of setting workers."""

from __future__ import annotations

import asyncio

import pytest
import run_helpers
from run_helpers import gated_job

from tokenflow_tui.job.describe import describe
from tokenflow_tui.job.inputs import scan_input
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.runner import JobRunner


@pytest.fixture
def gate():
    run_helpers.GATE.event = asyncio.Event()
    return run_helpers.GATE.event


def capped_job(tmp_path, workers: int = 8, cap: int = 80):
    job = gated_job(tmp_path, [{"prompt": f"p{i}"} for i in range(4)], workers=workers)
    job.write_text(job.read_text() + f"max = {cap}\n")  # [workers] is the job file's last table
    return job


def test_validate_names_the_cap(tmp_path):
    job = load_job(capped_job(tmp_path))
    assert "workers   8 (up to 80 from the dashboard)" in describe(job, scan_input(job))


async def test_set_workers_stops_at_the_cap_with_a_sentence(tmp_path, gate):
    runner = JobRunner(load_job(capped_job(tmp_path)), save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    assert runner.set_workers(78) is None
    assert runner.set_workers(88) == "80 workers, not 88: the job's limit ([workers] max)"  # `]` at 78
    assert runner.snapshot().stats.target_workers == 80
    assert runner.set_workers(90) == "at 80 workers already: the job's limit ([workers] max)"
    assert runner.snapshot().stats.target_workers == 80
    assert runner.set_workers(0) == "at 1 worker already: a job needs at least one"
    gate.set()
    assert await asyncio.wait_for(running, 10) == 0
    runner.close()


async def test_a_start_count_above_the_cap_raises_it_to_that_count(tmp_path, gate):
    runner = JobRunner(load_job(capped_job(tmp_path)), workers=120, save_interval_s=3600)
    runner.open()
    running = asyncio.create_task(runner.run())
    assert runner.set_workers(121) == "at 120 workers already: the job's limit ([workers] max)"
    gate.set()
    assert await asyncio.wait_for(running, 10) == 0
    runner.close()

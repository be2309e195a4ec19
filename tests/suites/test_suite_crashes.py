"""Crashes: SIGKILL at random moments, SIGTERM, Ctrl-C twice, a torn last line, a damaged middle line,
a full disk, and two runs on one output (DESIGN §5 last row, §6). Real processes, real files.

Each test prints its figures (cycles, lost, duplicated, invalid lines, requests sent again) with -s.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from run_helpers import read_records, start_tokenflow, tokenflow, until, write_input, write_job
from suite_helpers import ThreadedSimulator, file_figures

from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.sim import SimulatorConfig


def remote_job(tmp_path: Path, base_url: str, count: int, workers: int = 32) -> Path:
    write_input(tmp_path / "prompts.jsonl", count)
    return write_job(
        tmp_path,
        {
            "job": {"name": "crash", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"base_url": base_url, "model": "m", "timeout_s": 5},
            "request": {"params": {"max_tokens": 16}},
            "workers": {"count": workers},
            "retry": {"max_attempts": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
        },
    )


def wait_for(child, condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """Until `condition()` holds while the child runs; bounded in time."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline and child.poll() is None, f"{what}: not in time"
        time.sleep(0.05)


def whole_records(path: Path) -> int:
    figures = file_figures(path)
    return figures.lines - figures.torn_tail


def wait_for_records(path: Path, child, at_least: int = 1) -> None:
    """Until results.jsonl holds a whole record (the run is under way)."""
    wait_for(child, lambda: whole_records(path) >= at_least, "the run wrote nothing")


def read_until(child, start: str) -> list[str]:
    """The child's stderr lines up to and with the first that starts with `start` (all of it if none does)."""
    lines = []
    for line in child.stderr:
        lines.append(line)
        if line.startswith(start):
            break
    return lines


def state_claims(output: Path) -> int:
    """The bytes of results.jsonl that state.toml vouches for (0 when there is no state yet)."""
    path = output / "state.toml"
    return tomllib.loads(path.read_text())["results"]["size"] if path.exists() else 0


def report(name: str, **figures: int) -> None:
    print(f"\n[{name}] " + ", ".join(f"{key.replace('_', ' ')}: {value:,}" for key, value in figures.items()))


def test_sigkill_at_random_moments_loses_duplicates_and_damages_nothing(tmp_path):
    total = 96_000  # enough that the run outlives its eight kills (each run resends little)
    results = tmp_path / "out" / "results.jsonl"
    rng = random.Random(20240601)
    cycles = torn = 0
    with ThreadedSimulator(SimulatorConfig(latency_ms=2, jitter_ms=2, fail={"500": 0.02}, seed=9)) as sim:
        job = remote_job(tmp_path, sim.base_url, total)
        for _ in range(8):
            child = start_tokenflow("run", str(job), "--headless")
            time.sleep(rng.uniform(0.6, 1.4))  # a random moment of a real process's life, start-up included
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                cycles += 1
            child.communicate(timeout=30)
            figures = file_figures(results)
            torn += figures.torn_tail
            # only the line being written when the process died may be incomplete
            assert figures.invalid_lines == int(figures.torn_tail)
            assert figures.duplicated == 0
            # a kill during start-up may come before the run made its results file
            assert state_claims(tmp_path / "out") <= (results.stat().st_size if results.exists() else 0)
        final = tokenflow("run", str(job), "--headless", timeout=120)
        sent = sim.requests()
    assert final.returncode == 0, final.stderr
    figures = file_figures(results)
    report(
        "sigkill",
        cycles=cycles,
        torn_last_lines_cut=torn,
        lost=figures.lost(total),
        duplicated=figures.duplicated,
        invalid_lines=figures.invalid_lines,
        requests_sent_again=sent - figures.attempts,
        requests_sent=sent,
    )
    assert cycles >= 6
    assert (figures.lost(total), figures.duplicated, figures.invalid_lines) == (0, 0, 0)
    assert sum(figures.indexes.values()) == total  # one final record per request, no more


@pytest.mark.parametrize(
    "signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)], ids=["sigterm", "ctrl-c-twice"]
)
def test_sigterm_or_ctrl_c_twice_saves_exits_130_and_the_rerun_finishes_the_rest(tmp_path, signals):
    total = 2500
    results = tmp_path / "out" / "results.jsonl"
    with ThreadedSimulator(SimulatorConfig(latency_ms=300, jitter_ms=200, seed=2)) as sim:
        job = remote_job(tmp_path, sim.base_url, total, workers=256)
        child = start_tokenflow("run", str(job), "--headless")
        # some requests finished, more sent: some in flight
        wait_for(child, lambda: 0 < whole_records(results) < sim.requests(), "requests in flight")
        told = []
        for sig in signals:
            child.send_signal(sig)
            # the run tells it heard the signal before the next is sent (two pending signals would be one)
            told += read_until(child, "stopping")
        # read on through the same file: what it buffered past the last line told is not in the pipe any more
        err = "".join(told) + child.stderr.read()
        child.communicate(timeout=30)
        assert child.returncode == 130, err
        if len(signals) == 2:
            assert "stopping now" in err  # the second Ctrl-C cancels the requests in flight
        assert "progress saved" in err
        stopped = file_figures(results)
        assert 0 < len(stopped.indexes) < total and stopped.invalid_lines == 0
        assert state_claims(tmp_path / "out") == results.stat().st_size  # saved on the way out
        final = tokenflow("run", str(job), "--headless", timeout=120)
        sent = sim.requests()
    assert final.returncode == 0, final.stderr
    figures = file_figures(results)
    report(
        f"{'+'.join(s.name for s in signals)}",
        finished_before_the_stop=len(stopped.indexes),
        lost=figures.lost(total),
        duplicated=figures.duplicated,
        invalid_lines=figures.invalid_lines,
        requests_sent_again=sent - figures.attempts,
    )
    assert (figures.lost(total), figures.duplicated, figures.invalid_lines) == (0, 0, 0)
    if len(signals) == 1:
        assert sent == figures.attempts  # a soft stop lets every request in flight finish: nothing is sent twice
    else:
        assert 0 < sent - figures.attempts <= 256  # the cancelled ones, at most one per worker, go again


def test_a_torn_last_line_is_cut_and_its_request_sent_again(tmp_path):
    total = 300
    results = tmp_path / "out" / "results.jsonl"
    with ThreadedSimulator(SimulatorConfig(latency_ms=1, seed=2)) as sim:
        job = remote_job(tmp_path, sim.base_url, total)
        assert tokenflow("run", str(job), "--headless").returncode == 0
        records = read_records(results)
        # as if killed while writing the last record: half of it on disk, no newline
        whole = results.read_bytes()
        last_line = whole[:-1].rsplit(b"\n", 1)[1] + b"\n"
        results.write_bytes(whole[: -len(last_line)] + last_line[: len(last_line) // 2])
        (tmp_path / "out" / "state.toml").unlink()  # the crash came before the last save
        rerun = tokenflow("run", str(job), "--headless")
        sent = sim.requests()
    assert rerun.returncode == 0, rerun.stderr
    figures = file_figures(results)
    report(
        "torn last line",
        lost=figures.lost(total),
        duplicated=figures.duplicated,
        invalid_lines=figures.invalid_lines,
        requests_sent_again=sent - total,
    )
    assert (figures.lost(total), figures.duplicated, figures.invalid_lines) == (0, 0, 0)
    assert sent == total + 1  # only the request whose record was torn
    assert read_records(results)[-1]["index"] == records[-1]["index"]


def test_a_damaged_middle_line_is_refused_with_its_line_number_and_left_untouched(tmp_path):
    with ThreadedSimulator(SimulatorConfig(latency_ms=1, seed=2)) as sim:
        job = remote_job(tmp_path, sim.base_url, 50)
        assert tokenflow("run", str(job), "--headless").returncode == 0
        results = tmp_path / "out" / "results.jsonl"
        lines = results.read_bytes().split(b"\n")
        lines[2] = lines[2].replace(b',"index"', b'#"index"', 1)
        damaged = b"\n".join(lines)
        results.write_bytes(damaged)
        (tmp_path / "out" / "state.toml").unlink()  # nothing vouches for the bytes: all are read
        rerun = tokenflow("run", str(job), "--headless")
        assert sim.requests() == 50
    assert rerun.returncode == 2
    assert rerun.stderr == (
        f"tokenflow run: {results}:3: damaged record (invalid JSON at column 11: unexpected character, expected ',' or '}}'); "
        f"the file was not changed. `tokenflow repair {tmp_path / 'out'}` moves the damaged lines to "
        "results.damaged.jsonl (nothing is deleted) and their requests run again.\n"
    )
    assert results.read_bytes() == damaged


def _fail_on_results(real, results: Path):
    """os.write or os.fsync, failing with ENOSPC on the results file only (asyncio writes too)."""

    def fake(fd: int, *args):
        if os.readlink(f"/proc/self/fd/{fd}") == str(results):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *args)

    return fake


@pytest.mark.parametrize("call", ["write", "fsync"])
async def test_a_full_disk_pauses_the_job_with_the_reason_and_resuming_loses_nothing(tmp_path, monkeypatch, call):
    total = 400
    results = tmp_path / "out" / "results.jsonl"
    with ThreadedSimulator(SimulatorConfig(latency_ms=20, seed=2)) as sim:
        runner = JobRunner(load_job(remote_job(tmp_path, sim.base_url, total, workers=8)), save_interval_s=0.3)
        runner.open()
        monkeypatch.setattr(os, call, _fail_on_results(getattr(os, call), results.resolve()))
        running = asyncio.create_task(runner.run())
        await until(lambda: runner.snapshot().state == "paused")
        snap = runner.snapshot()
        assert snap.state == "paused"
        if call == "write":
            assert snap.reason is not None and snap.reason.startswith(
                f"saving failed: {results}: cannot write the results (the disk is full); "
            )
            assert snap.reason.endswith(" records are kept in memory and the next save tries again.")
        else:
            assert snap.reason == (
                f"saving failed: {results}: cannot save the results (the disk is full); the next save tries again."
            )
        held = snap.stats.done
        assert 0 < held < total
        monkeypatch.undo()  # room is made
        await runner.resume()
        assert await asyncio.wait_for(running, 30) == 0
        runner.close()
        sent = sim.requests()
    figures = file_figures(results)
    report(
        f"ENOSPC on {call}",
        finished_when_the_disk_filled=held,
        lost=figures.lost(total),
        duplicated=figures.duplicated,
        invalid_lines=figures.invalid_lines,
        requests_sent_again=sent - figures.attempts,
    )
    assert (figures.lost(total), figures.duplicated, figures.invalid_lines) == (0, 0, 0)
    assert sum(figures.indexes.values()) == total and sent == figures.attempts


def test_a_second_run_on_the_same_output_is_refused_and_the_first_finishes_alone(tmp_path):
    total = 3000
    with ThreadedSimulator(SimulatorConfig(latency_ms=50, seed=2)) as sim:
        job = remote_job(tmp_path, sim.base_url, total, workers=64)
        first = start_tokenflow("run", str(job), "--headless")
        wait_for_records(tmp_path / "out" / ".lock", first)
        second = tokenflow("run", str(job), "--headless")
        _, err = first.communicate(timeout=60)
        sent = sim.requests()
    assert second.returncode == 2
    assert second.stderr == f"tokenflow run: {tmp_path / 'out'} is in use by another tokenflow run (pid {first.pid}).\n"
    assert first.returncode == 0, err
    figures = file_figures(tmp_path / "out" / "results.jsonl")
    report(
        "two runs",
        lost=figures.lost(total),
        duplicated=figures.duplicated,
        invalid_lines=figures.invalid_lines,
        requests_sent_again=sent - figures.attempts,
    )
    assert (figures.lost(total), figures.duplicated, figures.invalid_lines, sent) == (0, 0, 0, figures.attempts)

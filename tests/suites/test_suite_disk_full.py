"""A full disk, for real: the output on a small tmpfs (issue 18). The job pauses, retries the save every second,
goes on by itself once there is room, quits cleanly on a signal saying what it could not write, and a disk full
from the start is a sentence. Skipped where a tmpfs cannot be mounted (not root, or in a container without it)."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from run_helpers import simulated_job, start_tokenflow, tokenflow
from suite_helpers import file_figures


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted in the test's folder."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A file that takes all of the disk but `leave` bytes (all of it with 0)."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with filler.open("wb") as out:
        left = free - leave
        try:
            while left > 0:
                left -= out.write(b"\0" * min(left, 1 << 16))
                out.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


def job_on(tmp_path: Path, disk: Path, count: int) -> Path:
    job = simulated_job(tmp_path, count, latency_ms=1, workers=16)
    job.write_text(job.read_text().replace('output = "out"', f'output = "{disk / "out"}"'))
    return job


def wait_for_line(child: subprocess.Popen[str], part: str) -> list[str]:
    """The child's stderr up to the first line with `part` (bounded: the test's timeout stops a silent child)."""
    seen = []
    for line in child.stderr:
        seen.append(line)
        if part in line:
            return seen
    raise AssertionError(f"the child ended without saying {part!r}: {''.join(seen)[-2000:]}")


def test_a_disk_that_fills_pauses_and_a_signal_quits_saying_what_was_not_written(tmp_path, small_disk):
    total = 8000  # about 3.5 MB of records: more than the disk holds
    job = job_on(tmp_path, small_disk, total)
    child = start_tokenflow("run", str(job), "--headless")
    try:
        seen = wait_for_line(child, ": paused: saving failed: ")
        child.send_signal(signal.SIGTERM)
        _, rest = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130
    assert "Traceback" not in "".join(seen) + rest
    last = rest.strip().split("\n")[-1]
    stopped = re.fullmatch(
        r"t: stopped with ([\d,]+) of 8,000 requests finished; progress saved in .*/results\.jsonl; run the same "
        r"command again to resume; ([\d,]+) finished requests could not be written \(saving failed\) and run again "
        r"then",
        last,
    )
    assert stopped is not None, last
    figures = file_figures(small_disk / "out" / "results.jsonl")
    unwritten = int(stopped[2].replace(",", ""))
    assert figures.invalid_lines == 0 and figures.duplicated == 0
    assert 0 < unwritten and len(figures.indexes) + unwritten == int(stopped[1].replace(",", ""))
    assert len(figures.indexes) < total


def test_a_disk_that_fills_goes_on_by_itself_once_there_is_room(tmp_path, small_disk):
    total = 2000  # about 0.9 MB of records
    filler = fill(small_disk, leave=300_000)
    job = job_on(tmp_path, small_disk, total)
    child = start_tokenflow("run", str(job), "--headless")
    try:
        wait_for_line(child, ": paused: saving failed: ")
        filler.unlink()  # room is made: the next save (within a second) works and the job resumes
        _, rest = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, rest
    assert rest.strip().split("\n")[-1].startswith("t: finished 2,000 requests (2,000 done, 0 failed) in ")
    figures = file_figures(small_disk / "out" / "results.jsonl")
    assert (figures.lost(total), figures.duplicated, figures.invalid_lines) == (0, 0, 0)


def test_a_job_that_finishes_while_the_disk_is_full_waits_for_room_to_save(tmp_path, small_disk):
    # about 50 kB of records for the 20 kB left, and a worker for each request: they have all finished
    # before the first write (0.2 s in), so the save that fails is the one at the end of the run
    total = 120
    filler = fill(small_disk, leave=20_000)
    job = simulated_job(tmp_path, total, latency_ms=1, workers=total)
    job.write_text(job.read_text().replace('output = "out"', f'output = "{small_disk / "out"}"'))
    child = start_tokenflow("run", str(job), "--headless")
    try:
        seen = wait_for_line(child, ": paused: saving failed: ")
        filler.unlink()
        _, rest = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, rest
    assert "Traceback" not in "".join(seen) + rest
    assert rest.strip().split("\n")[-1].startswith(f"t: finished {total} requests ({total} done, 0 failed) in ")
    figures = file_figures(small_disk / "out" / "results.jsonl")
    assert (figures.lost(total), figures.duplicated, figures.invalid_lines) == (0, 0, 0)


def test_a_disk_full_from_the_start_is_a_sentence_and_exit_2(tmp_path, small_disk):
    job = job_on(tmp_path, small_disk, 10)
    fill(small_disk, leave=0)
    result = tokenflow("run", str(job), "--headless")
    assert result.returncode == 2
    assert result.stderr == f"tokenflow run: {small_disk}/out/.lock: cannot write (the disk is full).\n"

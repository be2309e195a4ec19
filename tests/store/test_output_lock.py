"""One writer per output directory, checked with a real second process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tokenflow_tui.store.lock import LockedError, OutputLock

REPO = Path(__file__).resolve().parents[2]
HOLDER = """
import sys
from tokenflow_tui.store.lock import OutputLock
lock = OutputLock(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""


def start_holder(output: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(output)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    output = tmp_path / "runs" / "demo"
    output.mkdir(parents=True)
    holder = start_holder(output)
    try:
        with pytest.raises(LockedError) as caught:
            OutputLock(output)
        assert str(caught.value) == f"{output} is in use by another tokenflow run (pid {holder.pid})."
    finally:
        holder.communicate("")  # closing its stdin lets it exit
    assert holder.returncode == 0
    with OutputLock(output):
        assert (output / ".lock").read_text() == f"{os.getpid()}\n"
    OutputLock(output).close()  # the with block released it


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = OutputLock(tmp_path)
    lock.close()


def test_lock_is_released_by_close(tmp_path: Path) -> None:
    first = OutputLock(tmp_path)
    with pytest.raises(LockedError) as caught:
        OutputLock(tmp_path)  # flock conflicts between two opens even in one process
    assert str(caught.value) == f"{tmp_path} is in use by another tokenflow run (pid {os.getpid()})."
    first.close()
    OutputLock(tmp_path).close()

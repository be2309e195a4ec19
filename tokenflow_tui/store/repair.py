"""`tokenflow repair`: the lines of results.jsonl that are not records move to results.damaged.jsonl.

Nothing is deleted: the damaged lines are appended, as they were, to the damaged file; the records
stay in order in results.jsonl. Requests whose only record was damaged have none afterwards, so the
next run sends them again. state.toml forgets its summary of the file (it vouched for other bytes).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import StoreError, os_reason
from .export import STATE_RESULTS_KEY
from .files import fsync_directory
from .lock import OutputLock
from .results_file import DAMAGED_FILE, RESULTS_FILE, DamagedLine, parse_record
from .state_file import STATE_FILE, read_state, write_state


@dataclass(frozen=True, slots=True)
class Repair:
    results: Path
    damaged: Path
    records: int  # kept in results.jsonl
    moved: tuple[tuple[int, str], ...]  # (line number, why it is not a record) of each line moved


def repair_results(run_dir: str | os.PathLike[str]) -> Repair:
    """Move the damaged lines of RUN_DIR/results.jsonl aside, holding the run's lock; StoreError when it cannot."""
    run_dir = Path(run_dir)
    results, damaged = run_dir / RESULTS_FILE, run_dir / DAMAGED_FILE
    if not results.is_file():
        raise StoreError(f"{results}: no such file; is {run_dir} the output folder of a run?")
    with OutputLock(run_dir):
        fd, temp = tempfile.mkstemp(prefix=f".{RESULTS_FILE}.", suffix=".repair", dir=run_dir)
        try:
            with open(fd, "wb") as kept:
                moved, records = _sort_lines(results, kept)
                kept.flush()
                os.fsync(kept.fileno())
            if moved:
                _append_damaged(damaged, [line for _, line, _ in moved])
                os.replace(temp, results)
                fsync_directory(run_dir)
        except OSError as error:
            raise StoreError(f"{results}: cannot repair ({os_reason(error)}); the file was not changed.") from None
        finally:
            Path(temp).unlink(missing_ok=True)
        if moved:
            _forget_summary(run_dir / STATE_FILE)
    return Repair(results, damaged, records, tuple((number, why) for number, _, why in moved))


def _sort_lines(results: Path, kept: BinaryIO) -> tuple[list[tuple[int, bytes, str]], int]:
    """The damaged lines of `results` (number, bytes, why) and the count of records, which go to `kept`."""
    moved: list[tuple[int, bytes, str]] = []
    records = 0
    with open(results, "rb") as lines:
        for number, line in enumerate(lines, 1):
            body = line.removesuffix(b"\n")
            try:
                parse_record(body)
            except DamagedLine as why:
                moved.append((number, body, str(why)))
                continue
            kept.write(body + b"\n")  # a last line that is a whole record but lacks its newline gets one
            records += 1
    return moved, records


def _append_damaged(damaged: Path, lines: list[bytes]) -> None:
    with open(damaged, "ab") as out:
        for line in lines:
            out.write(line + b"\n")
        out.flush()
        os.fsync(out.fileno())


def _forget_summary(state_path: Path) -> None:
    """state.toml's summary vouched for the bytes before the repair: without it the next run reads every line."""
    state = read_state(state_path)
    if state is not None and STATE_RESULTS_KEY in state:
        del state[STATE_RESULTS_KEY]
        write_state(state_path, state)

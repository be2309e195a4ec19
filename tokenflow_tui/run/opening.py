"""Opening a run's output directory: its lock, the fingerprint check, and the progress of earlier runs.

Nothing is sent from here; results.jsonl is repaired (a torn last line cut) and read, state.toml only read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..job.fingerprint import ACCEPTABLE, changed_parts, fingerprint, in_words, job_version
from ..job.inputs import InputSummary, scan_input
from ..job.model import Job
from ..store.errors import StoreError, os_reason
from ..store.export import STATE_REQUESTS_KEY, STATE_RESULTS_KEY
from ..store.figures import fold_records
from ..store.lock import OutputLock
from ..store.previous import earlier_progress, set_aside
from ..store.record_reader import RecordReader
from ..store.records import record_error_kind
from ..store.results_file import RESULTS_FILE, ResultsSummary, ResultsWriter, recover, retried_offsets
from ..store.shards import SHARDS_KEY
from ..store.state_file import STATE_FILE, read_state
from .request_index import RequestTable, record_failure_label
from .statistics import LateRecords, RunStats

STATE_CHANGES_KEY = "changes"  # what `--accept-changes` let through, one table per resume
Confirm = Callable[[str], bool]  # asks the user a yes/no question (on a terminal), True to go on


class RunError(Exception):
    """The run cannot start or go on; the message is a sentence for the user."""


@dataclass(slots=True)
class OpenedRun:
    """The output of a run, held (locked, results open for appending), and what earlier runs left in it."""

    summary: InputSummary
    fingerprint: dict[str, str]
    lock: OutputLock
    writer: ResultsWriter
    reader: RecordReader
    table: RequestTable
    stats: RunStats
    done: int  # requests whose last record is done
    failed: int  # … failed (not counting those queued again by retry_failed)
    elapsed_s: float = 0.0  # running time of the earlier runs
    attempts: int = 0
    retries: int = 0
    workers: int | None = None  # the count the last run had, when it saved one
    history: list[dict[str, Any]] = field(default_factory=list)  # changes accepted by resumes, for state.toml
    notes: list[str] = field(default_factory=list)  # what opening did that the user should hear of
    requeued: list[str] = field(default_factory=list)  # storm.failure_label of each failed request queued again
    # queued again by retry_failed whose last record had two attempts or more (counted as retried till they finish)
    requeued_retried: set[int] = field(default_factory=set)
    job_version: str = ""  # the short name of the fingerprint, kept in each record (see __post_init__)

    def __post_init__(self) -> None:
        self.job_version = job_version(self.fingerprint)  # once: a record is written per request

    def close(self) -> int:
        """Flush and close the results file, then let go of the output directory.

        When the flush fails (a full disk) the buffered records are given up, never half-written;
        returns how many (0 normally). A next run sends those requests again.
        """
        try:
            self.writer.close()
            lost = 0
        except StoreError:
            lost = self.writer.abandon()
        self.reader.close()
        self.lock.close()
        return lost


def open_run(
    job: Job,
    retry_failed: bool = False,
    *,
    restart: bool = False,
    accept_changes: bool = False,
    confirm: Confirm = lambda question: True,
) -> OpenedRun:
    """Take the job's output directory and read what earlier runs left there.

    The lock comes first: a locked output is never touched. `restart` moves earlier progress aside
    (after `confirm`), but only once the input has been checked; `accept_changes` resumes despite the
    changes in fingerprint.ACCEPTABLE (after `confirm`, naming them), which state.toml then records.
    Raises JobError for a bad input, StoreError (LockedError when another run holds it) or RunError
    (a sentence) when the output cannot be used.
    """
    output = job.output
    first_run = not (output / STATE_FILE).exists()
    # a bad input is refused before anything is made or moved
    summary = scan_input(job) if first_run or restart else InputSummary(0, ())
    if output.exists() and not output.is_dir():
        raise RunError(f"the output {output} exists and is not a folder")
    with ExitStack() as undo:
        _make_folder(output, undo)
        lock = OutputLock(output)
        undo.callback(lock.close)
        notes: list[str] = []
        if restart and earlier_progress(output):
            if not confirm(f"Discard the progress in {output} (it is moved to a backup folder)?"):
                raise RunError("nothing was changed")
            notes.append(f"earlier progress moved to {set_aside(output)}")
        results_path = output / RESULTS_FILE
        state = read_state(output / STATE_FILE)
        if state is not None and SHARDS_KEY in state:
            raise RunError(f"{output} holds a job split into shards over a Ray cluster; resume it with --ray")
        job_fingerprint = fingerprint(job)
        history = _history(state)
        if state is not None:
            change = _accepted_change(state, job, job_fingerprint, accept_changes, confirm)
            if change is not None:
                history.append(change)
                notes.append(f"resuming despite changes to {change['parts']}")
        if state is not None and STATE_REQUESTS_KEY in state:
            # the same input was checked when the run began: a resume need not read it twice
            summary = InputSummary(int(state[STATE_REQUESTS_KEY]), ())
        elif not first_run and not restart:
            summary = scan_input(job)
        saved = ResultsSummary.from_data(state.get(STATE_RESULTS_KEY)) if state is not None else None
        size = _size(results_path)
        recovery = recover(results_path, saved)  # a damaged line is refused first: `tokenflow repair` mends it
        _refuse_lost_results(results_path, size, saved)
        if len(recovery.status) > summary.count:
            raise RunError(
                f"{results_path} has a record for input request {len(recovery.status) - 1}, but the input "
                f"has only {summary.count} requests; rerun with --restart to discard it"
            )
        table = RequestTable(summary.count)
        end = recovery.summary.size
        table.restore(recovery.status, recovery.offsets, lambda: retried_offsets(results_path, end))
        writer = ResultsWriter(results_path, recovery.summary)
        undo.callback(writer.close)
        reader = RecordReader(writer)
        undo.callback(reader.close)
        opened = OpenedRun(summary, job_fingerprint, lock, writer, reader, table, RunStats(), recovery.done, 0)
        opened.history, opened.notes = history, notes
        if state is not None:
            opened.stats = RunStats.from_data(state.get("stats", {}))
            opened.elapsed_s = float(state.get("elapsed_s", 0.0))
            opened.workers = int(state["workers"]) if "workers" in state else None
        offsets = recovery.offsets
        # the records written after the last save (all of them without saved figures) are not in them yet
        late = LateRecords(float(state["saved_at"]), opened.elapsed_s) if state and "saved_at" in state else None
        fold_records(
            opened.stats.figures,
            results_path,
            recovery.summary.size,
            lambda i, at: offsets[i] == at,
            late.add if late is not None else None,
        )
        if late is not None:
            opened.stats.add_late(late)
            opened.elapsed_s = late.last_s  # the running time up to the last record, not to the last save
        _count_from_results(opened, recovery.summary)
        _note_failed(opened, retry_failed)
        undo.pop_all()
    return opened


def _make_folder(output: Path, undo: ExitStack) -> None:
    """Make `output` and the folders above it; a refusal later takes away those that were made here (if empty)."""
    missing = [place for place in (output, *output.parents) if not place.exists()]
    for place in reversed(missing):
        try:
            place.mkdir()
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to take away
        except OSError as error:
            raise RunError(f"cannot make the output folder {output} ({os_reason(error)})") from None
        undo.callback(_remove_if_empty, place)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: it holds something that must stay, such as the lock of a run that took it


def _history(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The changes earlier resumes accepted, as state.toml keeps them."""
    history = state.get(STATE_CHANGES_KEY) if state is not None else None
    return [entry for entry in history if isinstance(entry, dict)] if isinstance(history, list) else []


def _accepted_change(
    state: dict[str, Any], job: Job, now: dict[str, str], accept: bool, confirm: Confirm
) -> dict[str, Any] | None:
    """None when the job is as saved; the change to record when `accept` lets it through; else RunError."""
    saved = state.get("fingerprint")
    parts = changed_parts(saved, job, now)
    if not parts:
        return None
    words = in_words(parts)
    refused = [part for part in parts if part not in ACCEPTABLE]
    if refused and accept:
        hint = f"--accept-changes never lets {in_words(refused)} through: rerun with --restart to discard it"
    elif refused:
        hint = "rerun with --restart to discard it, or set another output directory"
    elif not accept:
        hint = "rerun with --accept-changes to resume anyway, or with --restart to discard it"
    if refused or not accept:
        raise RunError(
            f"{job.output} holds progress that no longer matches the job: {words} changed since it was saved; {hint}"
        )
    if not confirm(f"Resume although {words} changed since the progress was saved?"):
        raise RunError("nothing was changed")
    before = job_version(saved) if isinstance(saved, dict) else "unknown"
    return {"at": time.time(), "parts": words, "from_version": before, "to_version": job_version(now)}


def _size(path: Path) -> int | None:
    """The file's size, None when there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RunError(f"cannot read {path} ({os_reason(error)})") from None


def _refuse_lost_results(path: Path, size: int | None, saved: ResultsSummary | None) -> None:
    """A results file that is gone, or shorter than state.toml vouches for, would send requests again silently."""
    if saved is None or saved.size == 0 or (size is not None and size >= saved.size):
        return
    what = "is missing" if size is None else f"holds only {size:,} bytes"
    raise RunError(
        f"{path} {what}, but {path.parent / STATE_FILE} says it held {saved.records:,} records "
        f"({saved.size:,} bytes); put the file back to resume, or rerun with --restart to start over "
        "(the state is moved aside, not deleted)"
    )


def _count_from_results(opened: OpenedRun, summary: ResultsSummary) -> None:
    """Tokens, attempts and retries as results.jsonl holds them.

    state.toml was saved up to 10 s before a crash, and records reach the file more often: the
    file, not the checkpoint, says what the finished requests cost (a token budget depends on it).
    """
    opened.stats.prompt_tokens = summary.prompt_tokens
    opened.stats.completion_tokens = summary.completion_tokens
    opened.attempts = summary.attempts
    opened.retries = summary.attempts - summary.records


def _note_failed(opened: OpenedRun, retry_failed: bool) -> None:
    """Count the failed requests by kind, or queue them again with `retry_failed`."""
    table, stats = opened.table, opened.stats
    stats.failed_by_kind.clear()
    for index in table.failed_indexes():
        record = opened.reader.read(table.offsets[index])
        kind = record_error_kind(record)
        if retry_failed:
            table.requeue(index)
            opened.requeued.append(record_failure_label(record))
            if len((record or {}).get("attempts") or ()) >= 2:
                opened.requeued_retried.add(index)
        else:
            table.failed[index] = kind
            stats.failed_by_kind[kind] += 1
    opened.failed = len(table.failed)
    if opened.requeued:
        opened.notes.append(f"queued again {len(opened.requeued):,} requests whose last record failed")

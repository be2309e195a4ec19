"""Opening a run's output directory: its lock, the fingerprint check, and the progress of earlier runs.

Nothing is sent from here; results.jsonl is repaired (a torn last line cut) and read, state.toml only read.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

from ..job.fingerprint import changes, fingerprint
from ..job.inputs import InputSummary, scan_input
from ..job.model import Job
from ..store.errors import os_reason
from ..store.export import STATE_REQUESTS_KEY, STATE_RESULTS_KEY
from ..store.figures import fold_records
from ..store.lock import OutputLock
from ..store.record_reader import RecordReader
from ..store.results_file import RESULTS_FILE, ResultsSummary, ResultsWriter, recover
from ..store.state_file import STATE_FILE, read_state
from .request_index import RequestTable, record_error_kind
from .statistics import RunStats


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
    # queued again by retry_failed whose last record had two attempts or more (counted as retried till they finish)
    requeued_retried: set[int] = field(default_factory=set)

    def close(self) -> None:
        """Flush and close the results file, then let go of the output directory."""
        self.writer.close()
        self.reader.close()
        self.lock.close()


def open_run(job: Job, retry_failed: bool = False) -> OpenedRun:
    """Take the job's output directory and read what earlier runs left there.

    Raises JobError for a bad input, StoreError (LockedError when another run holds it) or RunError
    (a sentence) when the output cannot be used.
    """
    output = job.output
    first_run = not (output / STATE_FILE).exists()
    summary = scan_input(job) if first_run else InputSummary(0, ())
    if output.exists() and not output.is_dir():
        raise RunError(f"the output {output} exists and is not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot make the output folder {output} ({os_reason(error)})") from None
    with ExitStack() as undo:
        lock = OutputLock(output)
        undo.callback(lock.close)
        results_path = output / RESULTS_FILE
        state = read_state(output / STATE_FILE)
        job_fingerprint = fingerprint(job)
        changed = changes(state.get("fingerprint"), job, job_fingerprint) if state is not None else None
        if changed is not None:
            raise RunError(
                f"{output} holds progress that no longer matches the job: {changed} changed since it was "
                "saved; rerun with --restart to discard it, or set another output directory"
            )
        if state is not None and STATE_REQUESTS_KEY in state:
            # the same input was checked when the run began: a resume need not read it twice
            summary = InputSummary(int(state[STATE_REQUESTS_KEY]), ())
        elif not first_run:
            summary = scan_input(job)
        saved = ResultsSummary.from_data(state.get(STATE_RESULTS_KEY)) if state is not None else None
        recovery = recover(results_path, saved)
        if len(recovery.status) > summary.count:
            raise RunError(
                f"{results_path} has a record for input request {len(recovery.status) - 1}, but the input "
                f"has only {summary.count} requests; rerun with --restart to discard it"
            )
        table = RequestTable(summary.count)
        table.restore(recovery.status, recovery.offsets)
        writer = ResultsWriter(results_path, recovery.summary)
        undo.callback(writer.close)
        reader = RecordReader(writer)
        undo.callback(reader.close)
        opened = OpenedRun(summary, job_fingerprint, lock, writer, reader, table, RunStats(), recovery.done, 0)
        if state is not None:
            opened.stats = RunStats.from_data(state.get("stats", {}))
            opened.elapsed_s = float(state.get("elapsed_s", 0.0))
            opened.workers = int(state["workers"]) if "workers" in state else None
        offsets = recovery.offsets
        # the records written after the last save (all of them without saved figures) are not in them yet
        fold_records(opened.stats.figures, results_path, recovery.summary.size, lambda i, at: offsets[i] == at)
        _count_from_results(opened, recovery.summary)
        _note_failed(opened, retry_failed)
        undo.pop_all()
    return opened


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
            if len((record or {}).get("attempts") or ()) >= 2:
                opened.requeued_retried.add(index)
        else:
            table.failed[index] = kind
            stats.failed_by_kind[kind] += 1
    opened.failed = len(table.failed)

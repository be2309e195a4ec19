"""`tokenflow export`: the last record of each input request, in input order.

Export only reads: a run may still be writing the directory (a torn last line is left out, not cut).
"""

from __future__ import annotations

import io
import os
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO, cast

from .errors import StoreError, os_reason
from .results_file import (
    DONE,
    FAILED,
    NO_RECORD,
    RESULTS_FILE,
    Recovery,
    ResultsSummary,
    recover,
)
from .shards import final_lines, shard_count, shard_dir
from .state_file import STATE_FILE, read_state

# the state.toml keys a run saves for its readers: the count of input requests, and the
# ResultsSummary of results.jsonl at that save (so the records it covers are not parsed again)
STATE_REQUESTS_KEY = "requests"
STATE_RESULTS_KEY = "results"
# … and what the input was: {"format", "api", "model", "columns", "id_column", "prompt_column", "messages_column"}
STATE_INPUT_KEY = "input"
_WANTED = {None: (DONE, FAILED), "done": (DONE,), "failed": (FAILED,)}
_WRITE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class RunContents:
    """What a run's output directory holds, as recovered without changing it."""

    run_dir: Path
    results_path: Path
    recovery: Recovery
    requests: int | None  # input requests, when state.toml says
    # a sharded run's shards, each as read alone (`recovery` merges them; its offsets are in the shard's file)
    parts: tuple[RunContents, ...] = ()

    @property
    def missing(self) -> int:
        """Input requests with no record yet (when the input's size is unknown: gaps below the last index)."""
        status = self.recovery.status
        requests = len(status) if self.requests is None else self.requests
        with_record = min(requests, len(status)) - status.count(NO_RECORD, 0, requests)
        return requests - with_record


@dataclass(frozen=True, slots=True)
class ExportSummary:
    written: int  # lines written
    missing: int  # input requests with no record yet
    requests: int | None  # input requests, when state.toml says


def load_run(run_dir: str | os.PathLike[str]) -> RunContents:
    """Read a run's output directory; StoreError when it is not one or its results are damaged."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StoreError(f"{run_dir}: no such directory.")
    results_path = run_dir / RESULTS_FILE
    state = read_state(run_dir / STATE_FILE) or {}
    requests = state.get(STATE_REQUESTS_KEY)
    requests = requests if type(requests) is int else None
    count = shard_count(state, run_dir / STATE_FILE)
    if count is not None:
        return _load_shards(run_dir, count, requests)
    if not results_path.is_file():
        raise StoreError(
            f"{run_dir}: no {RESULTS_FILE} here (not a run's output directory, or no request has finished yet)."
        )
    summary = ResultsSummary.from_data(state.get(STATE_RESULTS_KEY))
    recovery = recover(results_path, summary, repair=False)
    return RunContents(run_dir, results_path, recovery, requests)


def _load_shards(run_dir: Path, count: int, requests: int | None) -> RunContents:
    """The shards of a run read as one: statuses merged by index, summaries summed."""
    parts = []
    for number in range(count):
        folder = shard_dir(run_dir, number)
        if (folder / RESULTS_FILE).is_file():
            parts.append(load_run(folder))
        else:  # nothing of this shard finished yet
            parts.append(RunContents(folder, folder / RESULTS_FILE, Recovery(folder / RESULTS_FILE), requests))
    length = max(len(part.recovery.status) for part in parts)
    status, offsets = bytearray(length), array("q", [-1]) * length
    totals = dict.fromkeys(("size", "records", "prompt_tokens", "completion_tokens", "total_tokens", "attempts"), 0)
    for number, part in enumerate(parts):
        own = slice(number, len(part.recovery.status), count)  # the shard's indexes: number, number + count, …
        status[own] = part.recovery.status[own]
        offsets[own] = part.recovery.offsets[own]
        for key in totals:
            totals[key] += getattr(part.recovery.summary, key)
    merged = Recovery(run_dir / RESULTS_FILE, ResultsSummary(**totals), status=status, offsets=offsets)
    return RunContents(run_dir, run_dir / RESULTS_FILE, merged, requests, tuple(parts))


def final_records(run: RunContents, wanted: tuple[int, ...]) -> Iterator[tuple[int, bytes]]:
    """(index, line) of the last record of each input request whose status is in `wanted`, by index."""
    parts = run.parts or (run,)
    paths = [part.results_path for part in parts]
    sizes = [part.recovery.summary.size for part in parts]
    return final_lines(paths, sizes, run.recovery.status, run.recovery.offsets, wanted)


def export_results(
    run_dir: str | os.PathLike[str], out: TextIO | BinaryIO | str | os.PathLike[str], only: str | None = None
) -> ExportSummary:
    """Write the last record of each input request that has one, by input index, to `out`.

    `only` keeps the requests whose last record is "done" or "failed". A path for `out` is
    replaced only once the export is complete.
    """
    if only not in _WANTED:
        raise ValueError(f"only must be 'done', 'failed' or None, not {only!r}")
    run = load_run(run_dir)
    if isinstance(out, (str, os.PathLike)):
        target = Path(out)
        if target.resolve() == run.results_path.resolve():
            raise StoreError(f"{target}: is the run's own {RESULTS_FILE}; export to another file.")
        temp = target.with_name(f".{target.name}.tmp")
        try:
            with open(temp, "wb") as file:
                written = _write_records(run, _WANTED[only], file.write)
            os.replace(temp, target)
        except OSError as e:
            temp.unlink(missing_ok=True)
            raise StoreError(f"{target}: cannot write ({os_reason(e)}).") from None
    else:
        written = _write_records(run, _WANTED[only], _bytes_writer(out))
        out.flush()
    return ExportSummary(written, run.missing, run.requests)


def _bytes_writer(out: TextIO | BinaryIO) -> Callable[[bytes], object]:
    """A function writing bytes to `out`, a binary or a text stream."""
    binary: BinaryIO | None = getattr(out, "buffer", None)
    if binary is not None:
        out.flush()  # what was written to the text layer goes first
        return binary.write
    if isinstance(out, io.TextIOBase):
        return lambda data: out.write(data.decode())
    return cast(BinaryIO, out).write


def _write_records(run: RunContents, wanted: tuple[int, ...], write: Callable[[bytes], object]) -> int:
    written = 0
    batch: list[bytes] = []
    batch_bytes = 0
    for _, line in final_records(run, wanted):
        batch.append(line)
        batch_bytes += len(line)
        written += 1
        if batch_bytes >= _WRITE_BYTES:
            write(b"".join(batch))
            batch.clear()
            batch_bytes = 0
    if batch:
        write(b"".join(batch))
    return written

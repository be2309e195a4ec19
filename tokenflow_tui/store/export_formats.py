"""`tokenflow export --format openai-batch|parquet|csv|hf`, `--errors` and `--failed-as-input` (jsonl: store/export).

Every format writes the same requests in the same order as the jsonl export; a file given by path
appears only once it is complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import orjson

from .errors import StoreError, os_reason
from .export import _WANTED, ExportSummary, RunContents, _bytes_writer, export_results, load_run
from .export_batch import batch_line
from .export_rows import (
    OPENAI_BATCH,
    TOKENFLOW,
    input_columns,
    input_of,
    input_row,
    iter_records,
    output_row,
    request_of,
    result_columns,
)
from .export_tables import replace_path, write_csv, write_dataset, write_parquet
from .results_file import FAILED

EXPORT_FORMATS = ("jsonl", OPENAI_BATCH, "parquet", "csv", "hf")


def export_formatted(
    run_dir: str | os.PathLike[str],
    out: TextIO | BinaryIO | str | os.PathLike[str],
    export_format: str,
    only: str | None = None,
    errors: str | os.PathLike[str] | None = None,
) -> ExportSummary:
    """The last record of each request in `export_format` (jsonl: as store/export writes it); with `errors`
    (openai-batch only), the failed ones go there instead."""
    if only not in _WANTED:
        raise ValueError(f"only must be 'done', 'failed' or None, not {only!r}")
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"export_format must be one of {', '.join(EXPORT_FORMATS)}, not {export_format!r}")
    if export_format == "jsonl" and errors is None:
        return export_results(run_dir, out, only)
    run = load_run(run_dir)
    described = input_of(run)
    wanted = _WANTED[only]
    if errors is not None:
        if export_format != OPENAI_BATCH:
            raise StoreError("--errors goes with --format openai-batch (the Batch API's error file).")
        _write_to(Path(errors), run, lambda path: _write_lines(_batch_lines(run, (FAILED,), described), path))
        wanted = tuple(code for code in wanted if code != FAILED)
    records = iter_records(run, wanted)
    if export_format == OPENAI_BATCH:
        lines = (batch_line(record, described) for record in records)
        written = _write_stream(run, out, lambda write: _encode_lines(lines, write))
    else:
        columns = _output_columns(described)
        rows = (output_row(record, described) for record in records)
        written = _write_table(run, out, export_format, rows, columns)
    return ExportSummary(written, run.missing, run.requests)


def export_failed_as_input(run_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> ExportSummary:
    """The failed requests as an input file in the run's own input format, ready to run again."""
    run = load_run(run_dir)
    described = input_of(run)
    records = iter_records(run, (FAILED,))
    input_format = described["format"]
    if input_format == TOKENFLOW:
        lines: Iterable[dict[str, Any]] = (_our_line(record) for record in records)
        written = _write_to(Path(out), run, lambda path: _write_lines(lines, path))
    elif input_format == OPENAI_BATCH:
        lines = (input_row(request_of(record), described) for record in records)
        written = _write_to(Path(out), run, lambda path: _write_lines(lines, path))
    else:
        rows = (input_row(request_of(record), described) for record in records)
        written = _write_table(run, out, input_format, rows, input_columns(described))
    return ExportSummary(written, run.missing, run.requests)


def _our_line(record: dict[str, Any]) -> dict[str, Any]:
    """The line of our JSONL as it was read (a [handler]'s keys too), its id written out: a line that had
    none keeps the id it had (its index in the first input)."""
    return {"id": record["id"], **request_of(record)}


def _output_columns(described: dict[str, Any]) -> list[str]:
    columns = list(input_columns(described))
    taken = set(columns)
    # the names output_row gives: the run's columns after the input's, renamed where the input has one
    columns.extend(f"tokenflow_{c}" if c in taken else c for c in result_columns({}))
    return columns


def _batch_lines(run: RunContents, wanted: tuple[int, ...], described: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (batch_line(record, described) for record in iter_records(run, wanted))


def _encode_lines(lines: Iterable[dict[str, Any]], write: Callable[[bytes], object]) -> int:
    count = 0
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
        count += 1
        if len(chunk) >= 1024:
            write(b"".join(chunk))
            chunk.clear()
    write(b"".join(chunk))
    return count


def _write_lines(lines: Iterable[dict[str, Any]], path: Path) -> int:
    with open(path, "wb") as file:
        return _encode_lines(lines, file.write)


def _write_table(
    run: RunContents,
    out: TextIO | BinaryIO | str | os.PathLike[str],
    export_format: str,
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str],
) -> int:
    if export_format == "csv":
        return _write_stream(run, out, lambda write: write_csv(rows, columns, write))
    if not isinstance(out, (str, os.PathLike)):
        raise StoreError(
            f"--format {export_format} writes a {'folder' if export_format == 'hf' else 'file'}: give --out."
        )
    writer = write_parquet if export_format == "parquet" else write_dataset
    return _write_to(Path(out), run, lambda path: writer(rows, columns, path))


def _write_stream(
    run: RunContents,
    out: TextIO | BinaryIO | str | os.PathLike[str],
    write_all: Callable[[Callable[[bytes], object]], int],
) -> int:
    if isinstance(out, (str, os.PathLike)):
        return _write_to(Path(out), run, lambda path: _write_file(path, write_all))
    written = write_all(_bytes_writer(out))
    out.flush()
    return written


def _write_file(path: Path, write_all: Callable[[Callable[[bytes], object]], int]) -> int:
    with open(path, "wb") as file:
        return write_all(file.write)


def _write_to(target: Path, run: RunContents, write: Callable[[Path], int]) -> int:
    if target.resolve() == run.results_path.resolve():
        raise StoreError(f"{target}: is the run's own results file; export to another file.")
    try:
        return replace_path(target, write)
    except OSError as e:
        raise StoreError(f"{target}: cannot write ({os_reason(e)}).") from None

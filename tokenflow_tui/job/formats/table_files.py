"""The rows of a table input — CSV (stdlib), Parquet and a saved Hugging Face dataset (pyarrow) — in batches.

Nothing holds the whole table: Parquet is read a batch of rows at a time, a dataset's Arrow files
are memory-mapped and read a record batch at a time, CSV a line at a time. pyarrow allocates through
the system allocator, which gives freed batches back (see `_pyarrow`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ...store.errors import import_extra
from ..model import CSV, PARQUET
from .detect import HF_STATE

BATCH_ROWS = 4096


class TableError(Exception):
    """The table cannot be read; the message is a sentence, `row` the 1-based row it stopped at (None: before)."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


def table_columns(path: Path, input_format: str) -> list[str]:
    """The column names, in the table's order."""
    if input_format == CSV:
        with _open_csv(path) as stream:
            try:
                header = next(csv.reader(stream), None)
            except (csv.Error, UnicodeDecodeError) as error:
                raise TableError(f"cannot read the header line: {_csv_reason(error)}") from None
        if not header:
            raise TableError("the CSV file has no header line (the column names)")
        return header
    if input_format == PARQUET:
        return list(_parquet_file(path).schema_arrow.names)
    return list(_dataset_schema(path).names)


class BadRow(str):
    """A row that cannot be read as one (a CSV line with another count of fields): why, in its place."""


def table_rows(path: Path, input_format: str) -> Iterator[dict[str, Any] | BadRow]:
    """Every row as a dict by column name, in order; reading stops with TableError where the file is unreadable."""
    if input_format == CSV:
        yield from _csv_rows(path)
        return
    batches = _parquet_batches(path) if input_format == PARQUET else _dataset_batches(path)
    for batch in batches:
        yield from batch.to_pylist()


def _open_csv(path: Path) -> Any:
    # utf-8-sig: spreadsheets put a BOM before the header, which would join the first column's name
    return open(path, newline="", encoding="utf-8-sig")


def _csv_reason(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"not valid UTF-8 (byte 0x{error.object[error.start]:02x})"
    return str(error)


def _csv_rows(path: Path) -> Iterator[dict[str, Any] | BadRow]:
    csv.field_size_limit(sys.maxsize)  # a long prompt is a long field, not an error
    with _open_csv(path) as stream:
        reader = csv.reader(stream)
        rows = 0  # blank lines are no rows
        try:
            header = next(reader)
            for values in reader:
                if not values:
                    continue
                rows += 1
                if len(values) != len(header):
                    yield BadRow(f"has {len(values)} fields, the header has {len(header)}")
                else:
                    yield dict(zip(header, values))
        except (csv.Error, UnicodeDecodeError) as error:
            raise TableError(_csv_reason(error), rows + 1) from None


def _pyarrow(needed_for: str) -> Any:
    pa = import_extra("pyarrow", "data", needed_for)
    # mimalloc, pyarrow's default, keeps what each batch freed: 1M rows then cost ~50 MB more at peak
    pa.set_memory_pool(pa.system_memory_pool())
    return pa


def _parquet_file(path: Path) -> Any:
    pa = _pyarrow("a Parquet input")
    pq = import_extra("pyarrow.parquet", "data", "a Parquet input")
    try:
        # pre_buffer off: it reads each row group whole ahead of the batches, ~10 MB more at peak
        return pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowException, OSError) as error:
        raise TableError(f"not a readable Parquet file ({error})") from None


def _parquet_batches(path: Path) -> Iterator[Any]:
    # one thread: the row groups are decoded one after another anyway, and each thread keeps its own buffers
    yield from _parquet_file(path).iter_batches(batch_size=BATCH_ROWS, use_threads=False)


def _dataset_files(folder: Path) -> list[Path]:
    """The Arrow files of a dataset saved by `save_to_disk`, in order (its state.json lists them)."""
    try:
        state = orjson.loads((folder / HF_STATE).read_bytes())
        files = [folder / entry["filename"] for entry in state["_data_files"]]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise TableError(f"its {HF_STATE} does not list the dataset's files ({error})") from None
    if not files:
        raise TableError(f"its {HF_STATE} lists no data file")
    return files


def _dataset_schema(folder: Path) -> Any:
    pa = _pyarrow("a Hugging Face dataset input")
    path = _dataset_files(folder)[0]
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).schema
    except (pa.ArrowException, OSError) as error:
        raise TableError(f"cannot read {path.name} ({error})") from None


def _dataset_batches(folder: Path) -> Iterator[Any]:
    pa = _pyarrow("a Hugging Face dataset input")
    for path in _dataset_files(folder):
        with pa.memory_map(str(path)) as source:
            yield from pa.ipc.open_stream(source)

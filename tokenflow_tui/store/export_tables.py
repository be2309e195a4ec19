"""Writers of rows (dicts with the same columns) as CSV, Parquet or a Hugging Face dataset folder.

Rows go out a batch at a time, so an export of millions holds one batch. pyarrow and datasets are
optional extras, imported only here and only when asked for.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from .errors import StoreError, import_extra

BATCH_ROWS = 10_000


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], write: Callable[[bytes], object]) -> int:
    """Rows as CSV with a header; nested values as JSON strings, None as an empty field."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for batch in _batches(rows):
        for row in batch:
            writer.writerow([_csv_value(row.get(column)) for column in columns])
        count += len(batch)
        write(text.getvalue().encode())
        text.seek(0)
        text.truncate()
    write(text.getvalue().encode())
    return count


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return value


def write_parquet(rows: Iterable[dict[str, Any]], columns: Sequence[str], path: Path) -> int:
    pq = import_extra("pyarrow.parquet", "data", "--format parquet")
    count = 0
    writer = None
    try:
        for batch in _arrow_batches(rows, columns):
            if writer is None:
                writer = pq.ParquetWriter(str(path), batch.schema)
            writer.write_batch(batch)
            count += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return count


def write_dataset(rows: Iterable[dict[str, Any]], columns: Sequence[str], folder: Path) -> int:
    """A folder that `datasets.load_from_disk` reads: the rows as an Arrow stream, saved by datasets itself."""
    datasets = import_extra("datasets", "hf", "--format hf")
    pa = import_extra("pyarrow", "data", "--format hf")
    stream_path = folder.with_name(folder.name + ".arrow")
    count = 0
    try:
        with pa.OSFile(str(stream_path), "wb") as sink:
            writer = None
            for batch in _arrow_batches(rows, columns):
                if writer is None:
                    writer = pa.ipc.new_stream(sink, batch.schema)
                writer.write_batch(batch)
                count += batch.num_rows
            if writer is not None:
                writer.close()
        datasets.disable_progress_bars()  # export prints one line of its own
        # memory-mapped, not loaded; save_to_disk copies it into the dataset's own files
        datasets.Dataset.from_file(str(stream_path)).save_to_disk(str(folder))
    finally:
        stream_path.unlink(missing_ok=True)
    return count


def _batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, BATCH_ROWS)):
        yield batch


def _arrow_batches(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> Iterator[Any]:
    """Record batches with one schema: the types of the first batch, where a column that is all null is text."""
    pa = import_extra("pyarrow", "data", "a Parquet or dataset export")
    schema = None
    for batch in _batches(rows):
        if schema is None:
            found = pa.Table.from_pylist(batch).select(list(columns)).schema
            schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in found])
        try:
            yield pa.RecordBatch.from_pylist(batch, schema=schema)
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise StoreError(
                f"the rows do not fit one table schema ({error}); export as jsonl or csv instead"
            ) from None
    if schema is None:
        yield pa.RecordBatch.from_pylist([], schema=pa.schema([(c, pa.string()) for c in columns]))


def replace_path(target: Path, write: Callable[[Path], int]) -> int:
    """Write through `write(temporary)`, then put the result at `target` (a file or a folder) in one rename."""
    temp = target.with_name(f".{target.name}.tmp")
    _remove(temp)
    try:
        count = write(temp)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(temp, target)
    except BaseException:
        _remove(temp)
        raise
    return count


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

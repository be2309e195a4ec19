"""Which format an input is in, from the file itself, when the job file does not say (`[job] input_format`)."""

from __future__ import annotations

from pathlib import Path

import orjson

from ..model import CSV, HF, OPENAI_BATCH, PARQUET, TOKENFLOW

_PARQUET_MAGIC = b"PAR1"
_SUFFIXES = {".parquet": PARQUET, ".pq": PARQUET, ".csv": CSV}
_SNIFF_LINES = 100  # blank lines skipped before the first request, at most
HF_STATE = "state.json"  # what `Dataset.save_to_disk` writes beside its Arrow files


def detect_format(path: Path) -> str:
    """The input format of `path`: a saved dataset for a folder, else by magic bytes, suffix, then first line."""
    if path.is_dir():
        return HF
    with open(path, "rb") as stream:
        head = stream.read(len(_PARQUET_MAGIC))
        if head == _PARQUET_MAGIC:
            return PARQUET
        suffix = _SUFFIXES.get(path.suffix.lower())
        if suffix is not None:
            return suffix
        stream.seek(0)
        for _, raw in zip(range(_SNIFF_LINES), stream):
            if raw.strip(b" \t\r\n\xef\xbb\xbf"):
                return OPENAI_BATCH if _is_batch_line(raw) else TOKENFLOW
    return TOKENFLOW


def _is_batch_line(raw: bytes) -> bool:
    try:
        item = orjson.loads(raw.lstrip(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError:
        return False  # the line's problem is told by the scan of our own format
    return type(item) is dict and "custom_id" in item and "id" not in item

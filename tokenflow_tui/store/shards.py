"""A run split into shards (a job run on a cluster): RUN_DIR/state.toml holds the shard map, and each
shard writes its own RUN_DIR/shard-K/results.jsonl and state.toml. Input line `index` is shard
`index % count`'s; its records keep the global index, so the shards read together are one run.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .errors import StoreError

SHARDS_KEY = "shards"  # in RUN_DIR/state.toml: {"count": N, "split": "index % count"}
SPLIT = "index % count"


def shard_dir(run_dir: Path, number: int) -> Path:
    return run_dir / f"shard-{number}"


def shard_map(count: int) -> dict[str, Any]:
    """The shard map RUN_DIR/state.toml keeps."""
    return {"count": count, "split": SPLIT, "dirs": [shard_dir(Path(), k).name for k in range(count)]}


def shard_count(state: dict[str, Any] | None, where: Path) -> int | None:
    """The shard count a run directory's state says (None: not sharded); StoreError when it is garbled."""
    shards = (state or {}).get(SHARDS_KEY)
    if shards is None:
        return None
    count = shards.get("count") if isinstance(shards, dict) else None
    if type(count) is not int or count < 1 or shards.get("split") != SPLIT:
        raise StoreError(f"{where}: the [{SHARDS_KEY}] table is not a shard map this version reads.")
    return count


def final_lines(
    paths: Sequence[Path], sizes: Sequence[int], status: bytearray, offsets: Sequence[int], wanted: tuple[int, ...]
) -> Iterator[tuple[int, bytes]]:
    """(index, line with its newline) of each index whose status is in `wanted`, by index; line `index`
    is in `paths[index % len(paths)]` at `offsets[index]` (one path: an unsharded run)."""
    count = len(paths)
    with ExitStack() as stack:
        maps: list[mmap.mmap | None] = []
        for path, size in zip(paths, sizes):
            if size == 0:
                maps.append(None)
                continue
            file = stack.enter_context(open(path, "rb"))
            maps.append(stack.enter_context(mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ)))
        for index, code in enumerate(status):
            if code not in wanted:
                continue
            data = maps[index % count]
            assert data is not None  # a status code comes from a record, so its file has bytes
            start = offsets[index]
            yield index, data[start : data.find(b"\n", start) + 1]

"""A million Parquet rows through the job runner, beside the same requests as our JSONL in the same run.

    python -m pytest tests/bench/bench_formats.py -m benchmark -s

Issue 13 / DESIGN §5: the Parquet input is read in batches, so peak RSS of a 1M-row run stays ≤ 150 MB.
The job has a no-op [handler] (the input, the engine and the store are measured, not HTTP); each row
has an id, a prompt and two metadata columns, carried into every record. BENCH_FORMATS_ROWS sets the size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tokenflow_tui.bench.child import run_child

pytestmark = pytest.mark.benchmark

ROWS = int(os.environ.get("BENCH_FORMATS_ROWS", "1000000"))
MAX_RSS_MB = 150.0
HANDLER = """
import asyncio
from tokenflow import ActionDone


async def handler(trajectory):
    await asyncio.sleep(0)
    return ActionDone(), "ok"
"""


# in a child: the kernel counts a child's peak RSS from the memory of the process that started it,
# so the test's own process must not hold the table it writes
WRITE_INPUTS = """
import sys
import orjson, pyarrow as pa, pyarrow.parquet as pq

rows, folder = int(sys.argv[1]), sys.argv[2]
schema = pa.schema([("qid", pa.string()), ("question", pa.string()), ("topic", pa.string()), ("n", pa.int64())])
with pq.ParquetWriter(folder + "/input.parquet", schema) as parquet, open(folder + "/input.jsonl", "wb") as jsonl:
    for start in range(0, rows, 65536):
        n = list(range(start, min(rows, start + 65536)))
        ids, prompts, topics = [f"q{i}" for i in n], [f"tell me about item {i}" for i in n], [f"topic {i % 97}" for i in n]
        parquet.write_table(pa.table({"qid": ids, "question": prompts, "topic": topics, "n": n}, schema=schema))
        jsonl.writelines(
            orjson.dumps({"id": i, "prompt": p, "params": {"topic": t, "n": k}}) + b"\\n"
            for i, p, t, k in zip(ids, prompts, topics, n)
        )
"""


def write_inputs(folder: Path) -> None:
    subprocess.run([sys.executable, "-c", WRITE_INPUTS, str(ROWS), str(folder)], check=True)
    (folder / "noop.py").write_text(HANDLER)


def run(folder: Path, name: str, input_name: str, extra: str = "") -> tuple[float, float, dict]:  # type: ignore[type-arg]
    job = folder / f"{name}.toml"
    job.write_text(
        f'[job]\nname = "{name}"\ninput = "{input_name}"\noutput = "{name}"\n{extra}\n'
        '[handler]\npath = "noop.py:handler"\n\n[workers]\ncount = 64\n'
    )
    done = run_child(
        [sys.executable, "-m", "tokenflow_tui", "run", str(job), "--headless"], timeout_s=3000, cwd=str(folder)
    )
    assert done.code == 0, done.stderr
    state = tomllib.loads((folder / name / "state.toml").read_text())
    return done.peak_rss_mb, done.wall_s, state


@pytest.mark.timeout(3600)
def test_a_million_parquet_rows_stay_within_the_memory_target(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    parquet_rss, parquet_s, state = run(
        tmp_path, "parquet", "input.parquet", '[input]\nprompt_column = "question"\nid_column = "qid"\n'
    )
    assert state["done"] == ROWS
    jsonl_rss, jsonl_s, state = run(tmp_path, "jsonl", "input.jsonl")
    assert state["done"] == ROWS
    with open("/proc/loadavg") as load:
        loadavg = load.read().strip()
    print(
        f"\n{ROWS:,} rows, no-op handler, 64 workers (load {loadavg}):\n"
        f"  parquet input: peak RSS {parquet_rss:.0f} MB, {parquet_s:.1f} s\n"
        f"  jsonl input:   peak RSS {jsonl_rss:.0f} MB, {jsonl_s:.1f} s\n"
        f"  parquet / jsonl: RSS {parquet_rss / jsonl_rss:.2f}x, time {parquet_s / jsonl_s:.2f}x"
    )
    assert parquet_rss <= MAX_RSS_MB

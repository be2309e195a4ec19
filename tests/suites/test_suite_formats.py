"""Round trips through the real command line: the files people already have in, the shape their next step reads out.

OpenAI Batch JSONL in → run against the simulator → `export --format openai-batch` (fields and order);
Parquet, CSV and a saved dataset in → the same format out, every input column beside the results.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from run_helpers import tokenflow, write_job

from tokenflow_tui.sim.answers import embedding

datasets = pytest.importorskip("datasets", reason="the [hf] extra (datasets) is not installed: pip install -e '.[hf]'")
pa = pytest.importorskip("pyarrow", reason="the [data] extra (pyarrow) is not installed: pip install -e '.[data]'")
pq = pytest.importorskip(
    "pyarrow.parquet", reason="the [data] extra (pyarrow) is not installed: pip install -e '.[data]'"
)

RESULT_COLUMNS = [
    "status",
    "result",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "attempts",
    "latency_ms",
    "error",
]
SIMULATOR = {"simulate": True, "simulator": {"latency_ms": 1, "seed": 1}}
BATCH_LINES = [
    {
        "custom_id": "task-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 2},
    },
    {"custom_id": "task-2", "method": "POST", "url": "/v1/completions", "body": {"prompt": "alpha beta"}},
    {
        "custom_id": "task-0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"messages": [{"role": "user", "content": "hi"}]},
    },
]


def run_job(folder: Path, input_name: str, extra: dict[str, Any] | None = None) -> None:
    job = write_job(
        folder,
        {"job": {"name": "t", "input": input_name, "output": "out"}, "endpoint": SIMULATOR, **(extra or {})},
    )
    done = tokenflow("run", str(job), "--headless", cwd=folder)
    assert done.returncode == 0, done.stderr


def test_an_openai_batch_file_in_and_the_batch_output_shape_out(tmp_path: Path) -> None:
    (tmp_path / "batch.jsonl").write_text("".join(json.dumps(line) + "\n" for line in BATCH_LINES))
    run_job(tmp_path, "batch.jsonl", {"request": {"params": {"max_tokens": 50, "temperature": 0}}})
    out = tokenflow("export", str(tmp_path / "out"), "--format", "openai-batch")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [list(line) for line in lines] == [["id", "custom_id", "response", "error"]] * 3
    assert [line["custom_id"] for line in lines] == ["task-1", "task-2", "task-0"]  # input order, not id order
    assert [line["error"] for line in lines] == [None, None, None]
    responses = [line["response"] for line in lines]
    assert [list(r) for r in responses] == [["status_code", "request_id", "body"]] * 3
    assert [r["status_code"] for r in responses] == [200, 200, 200]
    chat, completion, default_model = (r["body"] for r in responses)
    # the body as sent: its own max_tokens (2) beat the job's 50, its model beat the job's
    assert chat["object"] == "chat.completion" and chat["model"] == "gpt-4o-mini"
    assert chat["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Echo: one"},
            "logprobs": None,
            "finish_reason": "length",
        }
    ]
    assert completion["object"] == "text_completion" and completion["model"] == "sim-1"
    assert completion["choices"][0]["text"] == "Echo: alpha beta"
    assert default_model["choices"][0]["message"]["content"] == "Echo: hi"
    assert set(chat["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    sent = {r["id"]: r["attempts"][0]["params"] for r in records}
    assert sent["task-2"] == {"id": "task-2", "url": "/v1/completions", "body": {"prompt": "alpha beta"}}


def test_batch_embeddings_run_against_the_simulator_and_come_back_as_embedding_lists(tmp_path: Path) -> None:
    lines = [
        {"custom_id": "e-1", "method": "POST", "url": "/v1/embeddings", "body": {"input": "the sea"}},
        {"custom_id": "e-2", "method": "POST", "url": "/v1/embeddings", "body": {"input": ["a", "b"], "dimensions": 4}},
    ]
    (tmp_path / "batch.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run_job(tmp_path, "batch.jsonl", {"request": {"params": {"max_tokens": 50}}})
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    # an embedding's result is its vector, or the vectors of a list of inputs
    assert records["e-1"]["result"] == embedding("the sea", 8)
    assert records["e-2"]["result"] == [embedding("a", 4), embedding("b", 4)]
    out = tokenflow("export", str(tmp_path / "out"), "--format", "openai-batch")
    assert out.returncode == 0, out.stderr
    bodies = [json.loads(line)["response"]["body"] for line in out.stdout.splitlines()]
    assert [body["object"] for body in bodies] == ["list", "list"]
    assert [[d["embedding"] for d in body["data"]] for body in bodies] == [
        [embedding("the sea", 8)],
        [embedding("a", 4), embedding("b", 4)],
    ]


def test_failed_batch_requests_go_to_the_errors_file_and_back_as_a_batch_input(tmp_path: Path) -> None:
    lines = [
        BATCH_LINES[0],
        {"custom_id": "bad", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "max_tokens": 0}},
    ]
    (tmp_path / "batch.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run_job(tmp_path, "batch.jsonl")
    out = tokenflow(
        "export", str(tmp_path / "out"), "--format", "openai-batch", "--errors", str(tmp_path / "errors.jsonl")
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["custom_id"] for line in out.stdout.splitlines()] == ["task-1"]
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert errors == [
        {
            "id": "batch_req_1",
            "custom_id": "bad",
            "response": None,
            "error": {"code": "http_4xx", "message": "HTTP 400: 'max_tokens' must be a positive integer"},
        }
    ]
    again = tokenflow("export", str(tmp_path / "out"), "--failed-as-input", str(tmp_path / "again.jsonl"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.jsonl").read_text() == json.dumps(lines[1], separators=(",", ":")) + "\n"


def test_a_parquet_file_in_and_parquet_out_with_every_input_column(tmp_path: Path) -> None:
    table = pa.table(
        {
            "qid": [10, 11, 12],
            "topic": ["cats", "dogs", None],
            "question": ["why purr", "why bark", "why fly"],
            "weight": [0.5, 1.5, 2.5],
            "tags": [["a"], [], ["b", "c"]],
        }
    )
    pq.write_table(table, tmp_path / "questions.parquet")
    run_job(tmp_path, "questions.parquet", {"input": {"prompt_column": "question", "id_column": "qid"}})
    out = tokenflow("export", str(tmp_path / "out"), "--format", "parquet", "--out", str(tmp_path / "answers.parquet"))
    assert out.returncode == 0, out.stderr
    answers = pq.read_table(tmp_path / "answers.parquet")
    assert answers.column_names == [*table.column_names, *RESULT_COLUMNS]
    assert answers.select(table.column_names).to_pylist() == table.to_pylist()
    assert answers.column("result").to_pylist() == ["Echo: why purr", "Echo: why bark", "Echo: why fly"]
    assert answers.column("status").to_pylist() == ["done"] * 3
    assert answers.column("attempts").to_pylist() == [1, 1, 1]


def test_a_csv_file_in_and_csv_out_with_nested_values_as_json(tmp_path: Path) -> None:
    (tmp_path / "chats.csv").write_text(
        'id,conversation,source\nc1,"[{""role"": ""user"", ""content"": ""hello there""}]",web\n'
        'c2,"[{""role"": ""user"", ""content"": ""bye""}]",app\n'
    )
    run_job(tmp_path, "chats.csv", {"input": {"messages_column": "conversation", "id_column": "id"}})
    out = tokenflow("export", str(tmp_path / "out"), "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0]) == ["id", "conversation", "source", *RESULT_COLUMNS]
    assert [(r["id"], r["source"], r["status"], r["result"], r["error"]) for r in rows] == [
        ("c1", "web", "done", "Echo: hello there", ""),
        ("c2", "app", "done", "Echo: bye", ""),
    ]
    assert json.loads(rows[0]["conversation"]) == [{"role": "user", "content": "hello there"}]


def test_a_saved_dataset_in_and_a_dataset_folder_out(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"prompt": ["red", "green"], "label": [1, 0]}).save_to_disk(str(tmp_path / "ds"))
    run_job(tmp_path, "ds")
    out = tokenflow("export", str(tmp_path / "out"), "--format", "hf", "--out", str(tmp_path / "answers"))
    assert out.returncode == 0, out.stderr
    answers = datasets.load_from_disk(str(tmp_path / "answers"))
    assert answers.column_names[:3] == ["prompt", "label", "status"]
    assert answers["result"] == ["Echo: red", "Echo: green"]
    assert answers["label"] == [1, 0]


def test_a_bad_parquet_row_exits_2_with_its_row_and_column_and_writes_nothing(tmp_path: Path) -> None:
    pq.write_table(pa.table({"prompt": ["fine", None, "fine"], "n": [1, 2, 3]}), tmp_path / "in.parquet")
    job = write_job(tmp_path, {"job": {"name": "t", "input": "in.parquet", "output": "out"}, "endpoint": SIMULATOR})
    done = tokenflow("run", str(job), "--headless", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f'{tmp_path / "in.parquet"}: row 2, column "prompt": the prompt must be a string, found null'
    ]
    assert not (tmp_path / "out").exists()


def test_the_sample_batch_job_is_valid() -> None:
    sample = Path(__file__).parents[2] / "sample_jobs" / "batch.toml"
    checked = tokenflow("validate", str(sample))
    assert checked.returncode == 0, checked.stderr
    assert "22 from" in checked.stdout and "(openai-batch, ids" in checked.stdout

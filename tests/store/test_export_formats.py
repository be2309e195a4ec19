"""`export --format openai-batch|csv|parquet|hf`, `--errors` and `--failed-as-input`, from a run's files alone."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tokenflow_tui.store.errors import StoreError
from tokenflow_tui.store.export_formats import export_failed_as_input, export_formatted
from tokenflow_tui.store.results_file import ResultsWriter
from tokenflow_tui.store.state_file import write_state

pq = pytest.importorskip(
    "pyarrow.parquet", reason="the [data] extra (pyarrow) is not installed: pip install -e '.[data]'"
)

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
TABLE_INPUT = {
    "format": "csv",
    "api": "chat",
    "model": "m",
    "columns": ["qid", "q", "status", "tags"],
    "id_column": "qid",
    "prompt_column": "q",
}


def done(index: int, params: dict[str, Any], result: Any, finish: str | None = "stop") -> dict[str, Any]:
    attempt = {"params": params, "result": result, "status_code": 200, "usage": USAGE, "finish_reason": finish}
    attempt.update(started_at=1700000000.5, latency_ms=12.5)
    return {
        "id": params.get("id", index),
        "index": index,
        "status": "done",
        "result": result,
        "usage": USAGE,
        "error": None,
        "attempts": [attempt],
    }


def failed(index: int, params: dict[str, Any]) -> dict[str, Any]:
    error = {"kind": "http_5xx", "message": "HTTP 500: boom", "status_code": 500, "excerpt": None}
    attempt = {"params": params, "error": error, "status_code": 500, "started_at": 1.0, "latency_ms": 3.0}
    return {
        "id": params.get("id", index),
        "index": index,
        "status": "failed",
        "result": None,
        "usage": None,
        "error": error,
        "attempts": [attempt, attempt],
    }


def make_run(folder: Path, records: list[dict[str, Any]], described: dict[str, Any] | None) -> Path:
    run = folder / "run"
    run.mkdir()
    writer = ResultsWriter(run / "results.jsonl")
    for record in records:
        writer.append(record)
    summary = writer.flush()
    writer.close()
    state: dict[str, Any] = {"requests": len(records), "results": summary.to_data()}
    if described is not None:
        state["input"] = described
    write_state(run / "state.toml", state)
    return run


CHAT_LINE = {"id": "a", "url": "/v1/chat/completions", "body": {"model": "gpt", "messages": []}}
EMBED_LINE = {"id": "e", "url": "/v1/embeddings", "body": {"input": ["x", "y"]}}
FAILED_LINE = {"id": "f", "url": "/v1/completions", "body": {"prompt": "p"}}


@pytest.fixture
def batch_run(tmp_path: Path) -> Path:
    records = [done(0, CHAT_LINE, "hello"), failed(1, FAILED_LINE), done(2, EMBED_LINE, [[0.5, 1.0], [2.0, 0.0]])]
    return make_run(tmp_path, records, {"format": "openai-batch", "api": "chat", "model": "job-model"})


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_openai_batch_lines_have_the_batch_apis_shape(batch_run: Path) -> None:
    out = io.StringIO()
    summary = export_formatted(batch_run, out, "openai-batch")
    assert summary.written == 3
    assert lines_of(out.getvalue()) == [
        {
            "id": "batch_req_0",
            "custom_id": "a",
            "response": {
                "status_code": 200,
                "request_id": "req_0_1",
                "body": {
                    "id": "chatcmpl-tokenflow-0",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": "gpt",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "hello"},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": USAGE,
                },
            },
            "error": None,
        },
        {
            "id": "batch_req_1",
            "custom_id": "f",
            "response": None,
            "error": {"code": "http_5xx", "message": "HTTP 500: boom"},
        },
        {
            "id": "batch_req_2",
            "custom_id": "e",
            "response": {
                "status_code": 200,
                "request_id": "req_2_1",
                "body": {
                    "object": "list",
                    "data": [
                        {"object": "embedding", "index": 0, "embedding": [0.5, 1.0]},
                        {"object": "embedding", "index": 1, "embedding": [2.0, 0.0]},
                    ],
                    "model": "job-model",
                    "usage": USAGE,
                },
            },
            "error": None,
        },
    ]


def test_errors_go_to_their_own_file_as_the_batch_api_does(batch_run: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    export_formatted(batch_run, out, "openai-batch", errors=tmp_path / "errors.jsonl")
    assert [line["custom_id"] for line in lines_of(out.getvalue())] == ["a", "e"]
    assert [line["custom_id"] for line in lines_of((tmp_path / "errors.jsonl").read_text())] == ["f"]
    with pytest.raises(StoreError, match="^--errors goes with --format openai-batch"):
        export_formatted(batch_run, io.StringIO(), "csv", errors=tmp_path / "e2.jsonl")


def test_failed_requests_as_a_batch_input(batch_run: Path, tmp_path: Path) -> None:
    summary = export_failed_as_input(batch_run, tmp_path / "again.jsonl")
    assert summary.written == 1
    assert lines_of((tmp_path / "again.jsonl").read_text()) == [
        {"custom_id": "f", "method": "POST", "url": "/v1/completions", "body": {"prompt": "p"}}
    ]


@pytest.fixture
def table_run(tmp_path: Path) -> Path:
    records = [
        done(0, {"id": "1", "prompt": "why", "metadata": {"status": "new", "tags": ["a", "b"]}}, "because"),
        failed(1, {"id": "2", "prompt": "how, then", "metadata": {"status": "old", "tags": None}}),
    ]
    return make_run(tmp_path, records, TABLE_INPUT)


def test_csv_keeps_the_input_columns_and_renames_a_clashing_one(table_run: Path) -> None:
    out = io.StringIO()
    export_formatted(table_run, out, "csv")
    assert out.getvalue().splitlines() == [
        "qid,q,status,tags,tokenflow_status,result,prompt_tokens,completion_tokens,total_tokens,attempts,latency_ms,error",
        '1,why,new,"[""a"",""b""]",done,because,3,2,5,1,12.5,',
        '2,"how, then",old,,failed,,,,,2,3.0,http_5xx: HTTP 500: boom',
    ]


def test_failed_requests_as_a_csv_input_with_only_the_input_columns(table_run: Path, tmp_path: Path) -> None:
    export_failed_as_input(table_run, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_text() == 'qid,q,status,tags\n2,"how, then",old,\n'


def test_parquet_needs_a_path_and_writes_typed_columns(table_run: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"^--format parquet writes a file: give --out\.$"):
        export_formatted(table_run, io.StringIO(), "parquet")
    export_formatted(table_run, tmp_path / "out.parquet", "parquet", only="done")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.to_pylist() == [
        {
            "qid": "1",
            "q": "why",
            "status": "new",
            "tags": ["a", "b"],
            "tokenflow_status": "done",
            "result": "because",
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "attempts": 1,
            "latency_ms": 12.5,
            "error": None,
        }
    ]
    assert not (tmp_path / ".out.parquet.tmp").exists()


def test_a_run_of_our_own_jsonl_exports_its_lines_columns(tmp_path: Path) -> None:
    run = make_run(
        tmp_path, [failed(0, {"prompt": "x", "params": {"top_p": 1}}), done(1, {"id": 7, "messages": []}, "y")], None
    )
    out = io.StringIO()
    export_formatted(run, out, "csv")
    assert out.getvalue().splitlines()[:2] == [
        "id,prompt,messages,params,status,result,prompt_tokens,completion_tokens,total_tokens,attempts,latency_ms,error",
        ',x,,"{""top_p"":1}",failed,,,,,2,3.0,http_5xx: HTTP 500: boom',
    ]
    export_failed_as_input(run, tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_text() == '{"id":0,"prompt":"x","params":{"top_p":1}}\n'


def test_a_missing_datasets_is_a_sentence_naming_the_extra(
    table_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(StoreError) as caught:
        export_formatted(table_run, tmp_path / "ds", "hf")
    assert str(caught.value) == "--format hf needs datasets, which is not installed: pip install 'tokenflow-tui[hf]'"
    assert not (tmp_path / "ds").exists()

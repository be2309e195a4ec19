"""Inputs beside our JSONL: detection, OpenAI Batch lines, Parquet / CSV / saved-dataset rows, and their problems."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tokenflow_tui.job.describe import describe
from tokenflow_tui.job.fingerprint import changes, fingerprint
from tokenflow_tui.job.formats.detect import detect_format
from tokenflow_tui.job.formats.reading import input_description
from tokenflow_tui.job.formats.table_files import BATCH_ROWS, table_rows
from tokenflow_tui.job.inputs import InputItem, InputSummary, iter_input, scan_input
from tokenflow_tui.job.model import Job
from tokenflow_tui.job.problems import JobError
from tokenflow_tui.job.reader import load_job

datasets = pytest.importorskip("datasets", reason="the [hf] extra (datasets) is not installed: pip install -e '.[hf]'")
pa = pytest.importorskip("pyarrow", reason="the [data] extra (pyarrow) is not installed: pip install -e '.[data]'")
pq = pytest.importorskip(
    "pyarrow.parquet", reason="the [data] extra (pyarrow) is not installed: pip install -e '.[data]'"
)

CHAT = "/v1/chat/completions"


def batch_line(custom_id: Any, url: str = CHAT, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": url,
        "body": body or {"messages": [{"role": "user", "content": "hi"}]},
    }


def write_lines(path: Path, lines: list[Any]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def make_job(folder: Path, input_name: str, extra: str = "", endpoint: str = "simulate = true\n") -> Job:
    (folder / "job.toml").write_text(f'[job]\nname = "t"\ninput = "{input_name}"\n{extra}\n[endpoint]\n{endpoint}')
    return load_job(folder / "job.toml", {})


def problems(job: Job) -> list[str]:
    with pytest.raises(JobError) as caught:
        scan_input(job)
    return caught.value.lines()


def test_the_format_is_detected_from_the_file(tmp_path: Path) -> None:
    write_lines(tmp_path / "batch.jsonl", [batch_line("a")])
    write_lines(tmp_path / "ours.jsonl", [{"id": "a", "prompt": "x"}])
    write_lines(tmp_path / "custom_id_is_a_field.jsonl", [{"id": 1, "custom_id": "a", "prompt": "x"}])
    pq.write_table(pa.table({"prompt": ["x"]}), tmp_path / "no_suffix")
    (tmp_path / "t.CSV").write_text("prompt\nx\n")
    (tmp_path / "not_json.txt").write_text("\n\n{oops\n")
    datasets.Dataset.from_dict({"prompt": ["x"]}).save_to_disk(str(tmp_path / "ds"))
    found = {name: detect_format(tmp_path / name) for name in sorted(p.name for p in tmp_path.iterdir())}
    assert found == {
        "batch.jsonl": "openai-batch",
        "custom_id_is_a_field.jsonl": "tokenflow",
        "ds": "hf",
        "no_suffix": "parquet",
        "not_json.txt": "tokenflow",
        "ours.jsonl": "tokenflow",
        "t.CSV": "csv",
    }


def test_a_forced_format_wins_over_detection(tmp_path: Path) -> None:
    (tmp_path / "rows.txt").write_text("prompt,n\nhello,1\n")
    job = make_job(tmp_path, "rows.txt", 'input_format = "csv"')
    assert job.job.input_format == "csv"
    assert list(iter_input(job)) == [InputItem(0, 0, {"prompt": "hello", "metadata": {"n": "1"}})]


def test_batch_lines_become_requests_with_custom_id_url_and_body(tmp_path: Path) -> None:
    lines = [
        batch_line("x-1"),
        batch_line("x-2", "/v1/embeddings", input="text", model="e"),
        batch_line("x-0", "/v1/completions", prompt="p"),
    ]
    write_lines(tmp_path / "in.jsonl", lines)
    job = make_job(tmp_path, "in.jsonl")
    assert scan_input(job) == InputSummary(3, ("x-1", "x-2", "x-0"))
    assert list(iter_input(job, only={1, 2})) == [
        InputItem(1, "x-2", {"id": "x-2", "url": "/v1/embeddings", "body": {"input": "text", "model": "e"}}),
        InputItem(2, "x-0", {"id": "x-0", "url": "/v1/completions", "body": {"prompt": "p"}}),
    ]


def test_batch_line_problems_are_located(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines: list[Any] = [
        batch_line("ok"),
        {"custom_id": 3, "method": "GET", "url": "/v1/chat/completion", "body": {}},
        {"method": "POST", "url": CHAT, "body": []},
        batch_line("e", "/v1/embeddings", text="no input"),
        batch_line("ok"),
    ]
    write_lines(path, lines)
    with path.open("a") as out:
        out.write('{"custom_id": \n')
    assert problems(make_job(tmp_path, "in.jsonl", 'input_format = "openai-batch"')) == [
        f'{path}:2:1: "custom_id" must be a string, found an integer',
        f'{path}:2:1: "method" must be "POST", found "GET"',
        f'{path}:2:1: "url" must be one of "/v1/chat/completions", "/v1/completions", "/v1/embeddings", '
        'found "/v1/chat/completion"; did you mean "/v1/chat/completions"?',
        f'{path}:3:1: a line of an OpenAI Batch file needs "custom_id"',
        f'{path}:3:1: "body" must be an object (the request as sent), found an array',
        f'{path}:4:1: "body" of a /v1/embeddings request needs "input"',
        f'{path}:5:1: duplicate id "ok": first used on line 1',
        f"{path}:6:1: invalid JSON: unexpected end of data",
    ]


def test_a_batch_body_without_model_needs_the_jobs_model(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "in.jsonl",
        [batch_line("a"), batch_line("b", model="m", messages=[{"role": "user", "content": "x"}])],
    )
    job = make_job(tmp_path, "in.jsonl", endpoint='base_url = "http://127.0.0.1:9/v1"\n')
    assert job.endpoint is not None and job.endpoint.model is None  # the bodies may name it
    assert problems(job) == [f'{tmp_path / "in.jsonl"}:1:1: "body" has no "model" and the job sets no [endpoint] model']


@pytest.fixture
def parquet_job(tmp_path: Path) -> Job:
    pq.write_table(
        pa.table(
            {
                "qid": ["a", "b"],
                "conv": [
                    [{"role": "user", "content": "hi", "name": None}],
                    [{"role": "user", "content": "yo", "name": "n"}],
                ],
                "score": [1.5, None],
            }
        ),
        tmp_path / "in.parquet",
    )
    return make_job(tmp_path, "in.parquet", '[input]\nmessages_column = "conv"\nid_column = "qid"')


def test_parquet_rows_become_requests_with_the_other_columns_as_metadata(parquet_job: Job) -> None:
    assert scan_input(parquet_job) == InputSummary(2, ("a", "b"))
    assert list(iter_input(parquet_job)) == [
        InputItem(0, "a", {"id": "a", "messages": [{"role": "user", "content": "hi"}], "metadata": {"score": 1.5}}),
        InputItem(
            1,
            "b",
            {"id": "b", "messages": [{"role": "user", "content": "yo", "name": "n"}], "metadata": {"score": None}},
        ),
    ]
    assert input_description(parquet_job) == {
        "format": "parquet",
        "api": "chat",
        "model": "sim-1",
        "columns": ["qid", "conv", "score"],
        "id_column": "qid",
        "messages_column": "conv",
    }


def test_table_row_problems_name_the_row_and_column(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text('id,prompt,conv\n1,fine,x\n1,again,x\n2,short\n3,"fine, too",x\n4,"oops\n')
    path = tmp_path / "in.csv"
    assert problems(make_job(tmp_path, "in.csv", '[input]\nid_column = "id"')) == [
        f"{path}: row 3: has 2 fields, the header has 3",
        f"{path}: row 5: has 2 fields, the header has 3",
        f'{path}: row 2, duplicate id "1": first used on row 1',
    ]
    pq.write_table(
        pa.table({"k": [1, None], "m": ['[{"role": "user", "content": "x"}]', "[oops"]}), tmp_path / "in.parquet"
    )
    path = tmp_path / "in.parquet"
    assert problems(make_job(tmp_path, "in.parquet", '[input]\nid_column = "k"\nmessages_column = "m"')) == [
        f'{path}: row 2, column "k": an id must be a string or an integer, found null',
        f'{path}: row 2, column "m": the messages must be a JSON list of chat messages: invalid JSON (unexpected character, expected a JSON value)',
    ]


def test_a_missing_column_is_named_with_the_columns_there_are(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("question,topic\nwhy,x\n")
    path = tmp_path / "in.csv"
    assert problems(make_job(tmp_path, "in.csv")) == [
        f'{path}: no "prompt" or "messages" column: name the one that holds the request with [input] prompt_column '
        'or messages_column; the columns are "question", "topic"'
    ]
    assert problems(make_job(tmp_path, "in.csv", '[input]\nprompt_column = "question"\nid_column = "qid"')) == [
        f'{path}: no column "qid" (input.id_column); the columns are "question", "topic"'
    ]


def test_input_section_problems_are_located_in_the_job_file(tmp_path: Path) -> None:
    write_lines(tmp_path / "in.jsonl", [{"prompt": "x"}])
    (tmp_path / "job.toml").write_text(
        '[job]\nname = "t"\ninput = "in.jsonl"\ninput_format = "parket"\n[endpoint]\nsimulate = true\n'
        '[input]\nprompt_column = "p"\nmessages_column = "m"\nid_col = "i"\n'
    )
    with pytest.raises(JobError) as caught:
        load_job(tmp_path / "job.toml", {})
    job_file = tmp_path / "job.toml"
    assert caught.value.lines() == [
        f'{job_file}:4:1: job.input_format must be "tokenflow" or "openai-batch" or "parquet" or "csv" or "hf", '
        'found "parket"; did you mean "parquet"?',
        f"{job_file}:9:1: [input]: give prompt_column or messages_column, not both",
        f'{job_file}:10:1: unknown key "id_col" in [input]; did you mean "id_column"?',
    ]
    (tmp_path / "job.toml").write_text(
        '[job]\nname = "t"\ninput = "in.jsonl"\n[endpoint]\nsimulate = true\n[input]\nprompt_column = "p"\n'
    )
    with pytest.raises(JobError) as caught:
        load_job(tmp_path / "job.toml", {})
    assert caught.value.lines() == [
        f"{job_file}:6:1: [input] names columns of a Parquet, CSV or dataset input; this input is tokenflow "
        "(set [job] input_format if it was detected wrongly)"
    ]


def test_a_saved_dataset_is_read_from_its_arrow_files(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"prompt": ["a", "b", "c"], "n": [1, 2, 3]}).save_to_disk(
        str(tmp_path / "ds"), num_shards=2
    )
    job = make_job(tmp_path, "ds")
    assert job.job.input_format == "hf"
    assert [(i.index, i.params) for i in iter_input(job)] == [
        (0, {"prompt": "a", "metadata": {"n": 1}}),
        (1, {"prompt": "b", "metadata": {"n": 2}}),
        (2, {"prompt": "c", "metadata": {"n": 3}}),
    ]
    (tmp_path / "not_a_dataset").mkdir()
    with pytest.raises(JobError) as caught:
        make_job(tmp_path, "not_a_dataset", 'input_format = "hf"')
    assert caught.value.lines() == [
        f"{tmp_path / 'job.toml'}:3:1: the input {tmp_path / 'not_a_dataset'} is a folder, and not a dataset saved by save_to_disk"
    ]


def test_parquet_is_read_a_batch_at_a_time(tmp_path: Path) -> None:
    rows = 3 * BATCH_ROWS
    pq.write_table(
        pa.table({"prompt": [f"p{i}" for i in range(rows)]}), tmp_path / "in.parquet", row_group_size=BATCH_ROWS
    )
    read = table_rows(tmp_path / "in.parquet", "parquet")
    assert next(read) == {"prompt": "p0"}
    # the generator holds one batch: its frame keeps the current batch's rows, not the table
    batch = read.gi_frame.f_locals["batch"]  # type: ignore[attr-defined]
    assert batch.num_rows == BATCH_ROWS


def test_a_missing_pyarrow_is_a_sentence_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pq.write_table(pa.table({"prompt": ["x"]}), tmp_path / "in.parquet")
    job = make_job(tmp_path, "in.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed: importing it raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert problems(job) == [
        f"{tmp_path / 'in.parquet'}: a Parquet input needs pyarrow, which is not installed: "
        "pip install 'tokenflow-tui[data]'"
    ]


def test_validate_names_the_format_and_the_per_line_api(tmp_path: Path) -> None:
    write_lines(tmp_path / "in.jsonl", [batch_line("a"), batch_line("b")])
    job = make_job(tmp_path, "in.jsonl")
    lines = describe(job, scan_input(job))
    assert lines[1] == f'requests  2 from {tmp_path / "in.jsonl"} (openai-batch, ids "a", "b")'
    assert lines[4] == "api       each request's url (/v1/chat/completions, /v1/completions or /v1/embeddings)"


def test_the_columns_that_make_the_requests_are_part_of_the_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("q,a\nwhy,how\n")
    job = make_job(tmp_path, "in.csv", '[input]\nprompt_column = "q"')
    saved = fingerprint(job)
    assert changes(saved, job, fingerprint(job)) is None
    other = make_job(tmp_path, "in.csv", '[input]\nprompt_column = "a"')
    assert changes(saved, other, fingerprint(other)) == "the [input] columns"
    forced = make_job(tmp_path, "in.csv", 'input_format = "csv"\n[input]\nprompt_column = "q"')
    assert changes(saved, forced, fingerprint(forced)) is None  # the same format, detected or named

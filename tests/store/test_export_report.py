"""`tokenflow export` and `tokenflow report` on a small run directory."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from tokenflow_tui.cli import export as export_cli
from tokenflow_tui.cli import report as report_cli
from tokenflow_tui.store.errors import StoreError
from tokenflow_tui.store.export import export_results
from tokenflow_tui.store.records import encode_record
from tokenflow_tui.store.report import build_report, format_report
from tokenflow_tui.store.results_file import ResultsWriter
from tokenflow_tui.store.state_file import write_state

LONG = "server error 503: " + "x" * 100


def attempt(latency_ms: float | None) -> dict[str, Any]:
    return {"params": {"prompt": "p"}, "result": "r", "started_at": 1.0, "latency_ms": latency_ms}


def done(index: int, record_id: Any, prompt: int, completion: int, *latencies: float) -> dict[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return {
        "id": record_id,
        "index": index,
        "status": "done",
        "result": f"answer {index}",
        "usage": usage,
        "error": None,
        "attempts": [attempt(ms) for ms in latencies],
    }


def failed(index: int, record_id: Any, kind: str, message: str, *latencies: float | None) -> dict[str, Any]:
    error = {"kind": kind, "message": message, "status_code": None, "excerpt": None}
    return {
        "id": record_id,
        "index": index,
        "status": "failed",
        "result": None,
        "usage": None,
        "error": error,
        "attempts": [attempt(ms) for ms in latencies],
    }


# in the order they finished; index 1 failed, then was retried and is done; 3 and 6 have no record
RECORDS = [
    done(0, "a", 10, 5, 100),
    failed(1, "b", "http_429", "rate limited", 200, 300),
    failed(2, "c", "timeout", "no answer within 30 s", 30000),
    done(1, "b", 20, 10, 50),
    failed(4, "e", "http_429", "too many requests\n  retry later", 400),
    failed(5, "f", "http_5xx", LONG, 1000, None),
    failed(7, 7, "http_429", "slow down", 700),
]
LAST = {r["index"]: r for r in RECORDS}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    writer = ResultsWriter(run / "results.jsonl")
    for r in RECORDS:
        writer.append(r)
    summary = writer.flush()
    writer.close()
    write_state(run / "state.toml", {"requests": 8, "results": summary.to_data()})
    return run


def lines(*indexes: int) -> bytes:
    return b"".join(encode_record(LAST[i]) for i in indexes)


@pytest.mark.parametrize(("only", "indexes"), [(None, (0, 1, 2, 4, 5, 7)), ("done", (0, 1)), ("failed", (2, 4, 5, 7))])
def test_export_writes_last_records_in_input_order(run_dir: Path, only: str | None, indexes: tuple[int, ...]) -> None:
    out = io.BytesIO()
    summary = export_results(run_dir, out, only)
    assert out.getvalue() == lines(*indexes)
    assert (summary.written, summary.missing, summary.requests) == (len(indexes), 2, 8)


def test_export_to_a_text_stream_and_to_a_file(run_dir: Path, tmp_path: Path) -> None:
    text = io.StringIO()
    export_results(run_dir, text, "done")
    assert text.getvalue() == lines(0, 1).decode()
    target = tmp_path / "export.jsonl"
    export_results(run_dir, target)
    assert target.read_bytes() == lines(0, 1, 2, 4, 5, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.jsonl", "runs"]
    with pytest.raises(StoreError) as caught:
        export_results(run_dir, run_dir / "." / "results.jsonl")
    assert str(caught.value) == f"{run_dir}/results.jsonl: is the run's own results.jsonl; export to another file."


def test_export_leaves_a_torn_line_alone(run_dir: Path) -> None:
    results = run_dir / "results.jsonl"
    with open(results, "ab") as file:
        file.write(b'{"id":"d","index":3,"sta')  # a run is writing, or crashed while writing
    content = results.read_bytes()
    out = io.BytesIO()
    assert export_results(run_dir, out).missing == 2
    assert out.getvalue() == lines(0, 1, 2, 4, 5, 7)
    assert results.read_bytes() == content


def test_export_without_state_counts_gaps_only(run_dir: Path) -> None:
    (run_dir / "state.toml").unlink()
    summary = export_results(run_dir, io.BytesIO())
    assert (summary.written, summary.missing, summary.requests) == (6, 2, None)


def run_cli(add_arguments: Any, command: Any, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return command(parser.parse_args(argv))


def test_export_command(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(export_cli.add_arguments, export_cli.command, [str(run_dir), "--only", "failed"]) == 0
    captured = capsys.readouterr()
    assert captured.out == lines(2, 4, 5, 7).decode()
    assert captured.err == "tokenflow export: 2 of 8 input requests have no record yet.\n"


def test_export_command_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert run_cli(export_cli.add_arguments, export_cli.command, [str(missing)]) == 2
    assert capsys.readouterr() == ("", f"tokenflow export: {missing}: no such directory.\n")

    assert run_cli(export_cli.add_arguments, export_cli.command, [str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"tokenflow export: {tmp_path}: no results.jsonl here (not a run's "
        "output directory, or no request has finished yet).\n"
    )

    results = run_dir / "results.jsonl"
    content = results.read_bytes()
    results.write_bytes(content.replace(b'"id":"c"', b'"id":"c'))
    assert run_cli(export_cli.add_arguments, export_cli.command, [str(run_dir)]) == 2
    assert capsys.readouterr() == (
        "",
        f"tokenflow export: {results}:3: damaged record (invalid JSON at column "
        "11: unexpected character, expected ',' or '}'); the file was not changed. "
        f"`tokenflow repair {run_dir}` moves the damaged lines to results.damaged.jsonl (nothing is deleted) and "
        "their requests run again.\n",
    )


def test_report_text(run_dir: Path) -> None:
    assert (
        format_report(build_report(run_dir))
        == f"""\
run        {run_dir}
requests   8: 6 finished (2 done, 4 failed), 2 without a record
records    7 in results.jsonl
failures   4
  http_429  2  e.g. e: too many requests retry later
  http_5xx  1  e.g. f: {LONG[:79]}…
  timeout   1  e.g. c: no answer within 30 s
tokens     45 (prompt 30, completion 15)
attempts   9 (2 retries; 1 request retried)
latency    p50 300 ms, p95 30,000 ms, p99 30,000 ms
"""
    )


def test_report_of_an_empty_run(tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_bytes(b"")
    assert (
        format_report(build_report(tmp_path))
        == f"""\
run        {tmp_path}
requests   0 finished (0 done, 0 failed)
records    0 in results.jsonl
failures   none
tokens     0 (prompt 0, completion 0)
attempts   0 (0 retries; 0 requests retried)
latency    no timed attempts
"""
    )


def test_report_command_json(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(report_cli.add_arguments, report_cli.command, [str(run_dir), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["failures"][0] == {
        "kind": "http_429",
        "count": 2,
        "example_id": "e",
        "example_message": "too many requests retry later",
    }
    assert {
        k: report[k] for k in ("requests", "records", "done", "failed", "missing", "attempts", "retries", "retried")
    } == {
        "requests": 8,
        "records": 7,
        "done": 2,
        "failed": 4,
        "missing": 2,
        "attempts": 9,
        "retries": 2,
        "retried": 1,
    }
    assert report["latency_p50_ms"] == pytest.approx(300.0, rel=0.01)


def test_report_command_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(report_cli.add_arguments, report_cli.command, [str(tmp_path / "x")]) == 2
    assert capsys.readouterr() == ("", f"tokenflow report: {tmp_path / 'x'}: no such directory.\n")

"""Resume with a million results: recovery of results.jsonl, with and without the saved summary.

Run: pytest tests/bench/bench_resume.py -m benchmark -s
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tokenflow_tui.engine import TokenFlowRequest, TokenFlowRequestTrajectory, TokenFlowRequestTrajectoryElement
from tokenflow_tui.store.records import build_record, encode_record
from tokenflow_tui.store.results_file import ResultsWriter, recover

RECORDS = 1_000_000
TARGET_S = 3.0  # DESIGN §5: resume of a run with 1M results


def finished_request(index: int) -> TokenFlowRequest:
    """A built-in request of about 400 bytes as a record; one in 40 failed after two attempts."""
    params = {"id": f"q-{index:07d}", "prompt": f"Give one fact about the number {index}."}
    usage = {"prompt_tokens": 14, "completion_tokens": 12, "total_tokens": 26}
    if index % 40:
        results = [
            {
                "text": f"{index} is a number with {len(str(index))} digits.",
                "usage": usage,
                "status_code": 200,
                "finish_reason": "stop",
            }
        ]
    else:
        error = {"kind": "http_5xx", "message": "server error (503)", "status_code": 503, "excerpt": None}
        results = [{"error": error}, {"error": error}]
    elements = [
        TokenFlowRequestTrajectoryElement(params, result, None, 1_750_000_000.0 + index / 1000, 0.05 + n)
        for n, result in enumerate(results)
    ]
    return TokenFlowRequest(index, TokenFlowRequestTrajectory(elements))


def timed(function, *args, **kwargs):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - wall, time.process_time() - cpu


@pytest.mark.benchmark
def test_record_cost() -> None:
    requests = [finished_request(i) for i in range(200_000)]

    def encode_all() -> None:
        for request in requests:  # nothing kept, as in the runner
            encode_record(build_record(request, True))

    _, _, cpu = timed(encode_all)
    print(
        f"\nbuild_record + encode_record: {cpu / len(requests) * 1e6:.2f} µs CPU per record "
        f"({len(encode_record(build_record(requests[1], True)))} bytes)"
    )


@pytest.mark.benchmark
def test_resume_with_a_million_results(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"

    def write_all() -> ResultsWriter:
        writer = ResultsWriter(path)
        for index in range(RECORDS):
            writer.append(build_record(finished_request(index), True))
        writer.close()
        return writer

    writer, wall, cpu = timed(write_all)
    size = path.stat().st_size
    print(
        f"\nwrote {RECORDS:,} records, {size / 1e6:.0f} MB ({size / RECORDS:.0f} bytes each) in {wall:.2f} s "
        f"({cpu / RECORDS * 1e6:.2f} µs CPU per record: engine request, build, encode, append, write)"
    )

    full, full_wall, full_cpu = timed(recover, path)
    print(f"recover, parsing every record:   {full_wall:.2f} s ({full_cpu:.2f} s CPU)")
    trusted, trusted_wall, trusted_cpu = timed(recover, path, writer.summary)
    print(f"recover, with the saved summary: {trusted_wall:.2f} s ({trusted_cpu:.2f} s CPU)")

    assert trusted.trusted_bytes == size
    assert (full.records, full.done, full.failed) == (RECORDS, RECORDS - RECORDS // 40, RECORDS // 40)
    assert trusted.summary == full.summary == writer.summary
    assert trusted.status == full.status and trusted.offsets == full.offsets
    path.unlink()  # half a gigabyte
    assert trusted_wall < TARGET_S

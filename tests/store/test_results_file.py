"""results.jsonl: the writer, recovery of torn and damaged files, and the summary that skips parsing."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tokenflow_tui.store import results_file
from tokenflow_tui.store.records import encode_record
from tokenflow_tui.store.results_file import (
    DONE,
    FAILED,
    NO_RECORD,
    ResultsSummary,
    ResultsWriter,
    StoreError,
    recover,
)


def record(
    index: int, status: str = "done", tokens: int = 3, record_id: Any = None, attempts: int = 1
) -> dict[str, Any]:
    usage = {"prompt_tokens": tokens, "completion_tokens": 2 * tokens, "total_tokens": 3 * tokens}
    return {
        "id": f"q-{index}" if record_id is None else record_id,
        "index": index,
        "status": status,
        "result": f"answer {index}" if status == "done" else None,
        "usage": usage if status == "done" else None,
        "error": None if status == "done" else {"kind": "timeout", "message": "late", "status_code": None},
        "attempts": [{"params": {"prompt": f"p{index}"}, "started_at": 1.0, "latency_ms": 10.0}] * attempts,
    }


def write_records(path: Path, records: list[dict[str, Any]]) -> ResultsSummary:
    writer = ResultsWriter(path)
    for r in records:
        writer.append(r)
    writer.close()
    return writer.summary


def test_round_trip_keeps_the_last_record_of_each_index(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    records = [record(0), record(2, "failed", attempts=3), record(1), record(2, "done", tokens=5)]
    written = write_records(path, records)
    lines = [encode_record(r) for r in records]
    assert path.read_bytes() == b"".join(lines)

    recovery = recover(path)
    assert recovery.status == bytearray([DONE, DONE, DONE])
    assert list(recovery.offsets) == [0, len(lines[0]) + len(lines[1]), sum(map(len, lines[:3]))]
    assert list(recovery.last_records()) == [
        (0, "done", 0),
        (1, "done", recovery.offsets[1]),
        (2, "done", recovery.offsets[2]),
    ]
    assert (recovery.done, recovery.failed, recovery.records, recovery.bytes_cut) == (3, 0, 4, 0)
    assert (
        recovery.summary
        == written
        == ResultsSummary(
            size=len(b"".join(lines)),
            crc32=written.crc32,
            records=4,
            prompt_tokens=11,
            completion_tokens=22,
            total_tokens=33,
            attempts=6,
        )
    )


def test_append_returns_offsets_and_buffered_lines_are_readable(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "results.jsonl")
    first, second = record(0), record(1, "failed")
    assert writer.append(first) == 0
    assert writer.append(second) == len(encode_record(first))
    assert writer.pending_line(len(encode_record(first))) == encode_record(second)[:-1]
    assert (writer.records, writer.buffered, (tmp_path / "results.jsonl").stat().st_size) == (2, 2, 0)
    writer.flush()
    assert writer.pending_line(0) is None
    assert (writer.records, writer.buffered) == (2, 0)
    writer.close()


def test_buffer_is_written_once_past_the_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results_file, "FLUSH_BYTES", 3 * len(encode_record(record(0))))
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.append(record(0))
    writer.append(record(1))
    assert path.stat().st_size == 0
    writer.append(record(2))
    assert path.read_bytes() == b"".join(encode_record(record(i)) for i in range(3))
    assert writer.buffered == 0
    writer.close()


def test_write_buffered_writes_whole_records_without_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    writer.append(record(0))
    writer.append(record(1, "failed"))
    writer.write_buffered()
    assert path.read_bytes() == encode_record(record(0)) + encode_record(record(1, "failed"))
    assert (writer.buffered, writer.summary.records, synced) == (0, 2, [])
    writer.write_buffered()  # nothing buffered: nothing written
    assert path.stat().st_size == writer.summary.size
    writer.flush()
    assert len(synced) == 2  # a save still makes the file and its new directory entry durable
    writer.close()


def test_write_buffered_leaves_the_records_to_a_flush_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.append(record(0))
    real_write = os.write

    def write_while_the_timer_fires(fd: int, data: Any) -> int:
        writer.append(record(1))
        writer.write_buffered()  # a flush holds the file: this one leaves record 1 in the buffer
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_while_the_timer_fires)
    writer.flush(fsync=False)
    monkeypatch.undo()
    assert (path.read_bytes(), writer.buffered) == (encode_record(record(0)), 1)
    writer.close()
    assert path.read_bytes() == encode_record(record(0)) + encode_record(record(1))


def test_writer_refuses_a_file_it_was_not_told_about(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(encode_record(record(0)) + b'{"id":')
    with pytest.raises(StoreError) as caught:
        ResultsWriter(path, recover(path, repair=False).summary)
    assert (
        str(caught.value) == f"{path}: holds {path.stat().st_size} bytes where {len(encode_record(record(0)))} "
        "were expected; recover it before appending."
    )


def test_torn_last_line_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    whole = encode_record(record(0)) + encode_record(record(1))
    path.write_bytes(whole + b'{"id":"q-2","index":2,"sta')
    recovery = recover(path)
    assert (recovery.bytes_cut, recovery.records, recovery.summary.size) == (26, 2, len(whole))
    assert path.read_bytes() == whole
    # and a writer can go on from there
    writer = ResultsWriter(path, recovery.summary)
    writer.append(record(2))
    writer.close()
    assert recover(path).summary == writer.summary
    assert path.read_bytes() == whole + encode_record(record(2))


def test_invalid_last_line_with_its_newline_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    whole = encode_record(record(0))
    path.write_bytes(whole + b'{"id":"q-1","ind\x00\x00\n')
    recovery = recover(path)
    assert (recovery.bytes_cut, recovery.records) == (19, 1)
    assert path.read_bytes() == whole


def test_reading_without_repair_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    content = encode_record(record(0)) + b'{"id":'
    path.write_bytes(content)
    recovery = recover(path, repair=False)
    assert (recovery.bytes_cut, recovery.records, recovery.done) == (6, 1, 1)
    assert path.read_bytes() == content


def test_damaged_middle_is_refused_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    content = encode_record(record(0)) + b'{"id":"q-1","index":1,"sta\n' + encode_record(record(2)) + b'{"id":'
    path.write_bytes(content)
    with pytest.raises(StoreError) as caught:
        recover(path)
    assert str(caught.value) == (
        f"{path}:2: damaged record (invalid JSON at column 27: unexpected end of data); the file was not changed. "
        f"`tokenflow repair {tmp_path}` moves the damaged lines to results.damaged.jsonl (nothing is deleted) and "
        "their requests run again."
    )
    assert path.read_bytes() == content


def test_invalid_line_before_a_torn_tail_is_damage(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    content = encode_record(record(0)) + b"garbage\n" + b'{"id":'
    path.write_bytes(content)
    with pytest.raises(StoreError, match=r"results\.jsonl:2: damaged record \(invalid JSON at column 1: "):
        recover(path)
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"id":1,"index":-1,"status":"done"}', '"index" is not a whole number'),
        (b'{"id":1,"index":true,"status":"done"}', '"index" is not a whole number'),
        (b'{"id":1,"index":1,"status":"maybe"}', '"status" is neither "done" nor "failed"'),
        (b'{"id":1,"index":1,"status":"done","usage":null}', '"usage" or "attempts" is not what a record holds'),
    ],
)
def test_json_that_is_not_a_record_is_damage(tmp_path: Path, line: bytes, reason: str) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(line + b"\n" + encode_record(record(0)))
    with pytest.raises(StoreError) as caught:
        recover(path)
    assert str(caught.value) == (
        f"{path}:1: damaged record ({reason}); the file was not changed. `tokenflow repair {tmp_path}` moves the "
        "damaged lines to results.damaged.jsonl (nothing is deleted) and their requests run again."
    )


def test_missing_file_holds_nothing(tmp_path: Path) -> None:
    recovery = recover(tmp_path / "results.jsonl")
    assert (recovery.records, recovery.summary, len(recovery.status)) == (0, ResultsSummary(), 0)
    assert not (tmp_path / "results.jsonl").exists()


def test_summary_skips_parsing_of_the_part_it_vouches_for(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    records = [record(0), record(1, record_id={"nested": 1}), record(2, "failed"), record(0, "failed")]
    summary = write_records(path, records)
    later = [record(3), record(1, "failed", attempts=2)]
    writer = ResultsWriter(path, summary)
    for r in later:
        writer.append(r)
    writer.close()

    full = recover(path)
    trusted = recover(path, summary)
    assert (full.trusted_bytes, trusted.trusted_bytes) == (0, summary.size)
    assert trusted.summary == full.summary == writer.summary
    assert trusted.status == full.status == bytearray([FAILED, FAILED, FAILED, DONE])
    assert trusted.offsets == full.offsets
    # the summary's sums count for its part; the records after it are parsed
    assert (summary.total_tokens, trusted.summary.total_tokens) == (18, 18 + 9)


def test_summary_of_a_changed_file_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    summary = write_records(path, [record(0), record(1)])
    content = path.read_bytes()
    path.write_bytes(content.replace(b'"answer 1"', b'"answer 7"'))
    recovery = recover(path, summary)
    assert recovery.trusted_bytes == 0
    assert recovery.summary.crc32 != summary.crc32
    assert recovery.status == bytearray([DONE, DONE])

    path.write_bytes(content.replace(b'"answer 0"', b'"answer 0'))
    with pytest.raises(StoreError, match=r"results\.jsonl:1: damaged record \(invalid JSON"):
        recover(path, summary)


def test_summary_larger_than_the_file_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    summary = write_records(path, [record(0)])
    path.write_bytes(b"")
    recovery = recover(path, summary)
    assert (recovery.trusted_bytes, recovery.records, len(recovery.status)) == (0, 0, 0)


def test_summary_survives_state_toml() -> None:
    summary = ResultsSummary(10, 20, 1, 2, 3, 5, 1)
    assert ResultsSummary.from_data(summary.to_data()) == summary
    assert ResultsSummary.from_data({**summary.to_data(), "crc32": "x"}) is None
    assert ResultsSummary.from_data(None) is None


real_os_write = os.write


def enospc_after(limit: int, real_write: Any) -> Any:
    """os.write that writes at most `limit` bytes in all, then fails as a full disk does."""
    room = [limit]

    def write(fd: int, data: Any) -> int:
        if room[0] == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(data[: room[0]]))
        room[0] -= n
        return n

    return write


def test_full_disk_keeps_records_in_memory_then_writes_them_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.append(record(0))
    writer.flush()
    before = path.read_bytes()
    for i in (1, 2, 3):
        writer.append(record(i))
    monkeypatch.setattr(os, "write", enospc_after(len(encode_record(record(1))) + 10, os.write))
    with pytest.raises(StoreError) as caught:
        writer.flush()
    assert str(caught.value) == (
        f"{path}: cannot write the results (the disk is full); "
        "3 records are kept in memory and the next save tries again."
    )
    assert path.read_bytes() == before  # the part that reached the file was cut: whole lines only
    assert (writer.buffered, writer.summary.records) == (3, 1)
    monkeypatch.undo()

    writer.append(record(4))
    writer.close()
    assert path.read_bytes() == b"".join(encode_record(record(i)) for i in range(5))
    assert recover(path).summary == writer.summary


def test_append_leaves_a_failed_write_to_the_next_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results_file, "FLUSH_BYTES", 1)  # every append tries to write
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    calls = []

    def full_disk(fd: int, data: Any) -> int:
        calls.append(len(data))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    offsets = [writer.append(record(i)) for i in range(3)]
    assert len(calls) == 1  # after the first failure, appends stop trying
    assert offsets == [0, len(encode_record(record(0))), len(encode_record(record(0)) + encode_record(record(1)))]
    assert (writer.buffered, path.stat().st_size) == (3, 0)
    with pytest.raises(StoreError, match="the disk is full"):
        writer.flush()
    monkeypatch.setattr(os, "write", real_os_write)
    writer.append(record(3))
    assert path.stat().st_size == 0  # appends write again only once a flush has succeeded
    writer.flush(fsync=False)
    assert path.read_bytes() == b"".join(encode_record(record(i)) for i in range(4))
    writer.append(record(4))
    assert path.read_bytes().endswith(encode_record(record(4)))
    writer.close()


def test_failed_fsync_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.append(record(0))
    calls = []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StoreError) as caught:
        writer.flush()
    assert str(caught.value) == f"{path}: cannot save the results (the disk is full); the next save tries again."
    monkeypatch.undo()
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    summary = writer.flush()
    assert len(calls) == 1 and len(synced) == 2  # the file, then its new directory entry
    assert path.read_bytes() == encode_record(record(0))
    assert summary == recover(path).summary


def test_write_that_cannot_be_undone_stops_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.append(record(0))
    monkeypatch.setattr(os, "write", enospc_after(10, os.write))

    def failing_truncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "ftruncate", failing_truncate)
    message = (
        f"{path}: a failed write (the disk is full) could not be undone (input/output error); "
        "stop this run and rerun it to recover."
    )
    with pytest.raises(StoreError) as caught:
        writer.flush()
    assert str(caught.value) == message
    monkeypatch.undo()
    with pytest.raises(StoreError) as caught:
        writer.flush()
    assert str(caught.value) == message
    # what the next run sees: a torn line, cut by recovery; the record is simply not there
    assert (recover(path).records, path.stat().st_size) == (0, 0)


def test_records_being_written_stay_readable_and_appendable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush in a thread writes while the event loop appends and reads."""
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.append(record(0))
    seen: list[Any] = []
    real_write = os.write

    def write_while_appending(fd: int, data: Any) -> int:
        seen.append(writer.pending_line(0))
        seen.append(writer.append(record(1)))
        seen.append(writer.pending_line(seen[-1]))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_while_appending)
    writer.flush(fsync=False)
    monkeypatch.undo()
    first, second = encode_record(record(0)), encode_record(record(1))
    assert seen == [first[:-1], len(first), second[:-1]]
    assert (path.read_bytes(), writer.buffered) == (first, 1)
    writer.close()
    assert path.read_bytes() == first + second


def test_status_lines_survive_many_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines that straddle the reader's blocks are read whole, in both the trusted and the full pass."""
    monkeypatch.setattr(results_file, "READ_BYTES", 100)
    path = tmp_path / "results.jsonl"
    records = [record(i % 7, "failed" if i % 3 == 0 else "done", record_id=i if i % 2 else None) for i in range(40)]
    summary = write_records(path, records)
    full, trusted = recover(path), recover(path, summary)
    expected = bytearray(NO_RECORD for _ in range(7))
    for r in records:
        expected[r["index"]] = DONE if r["status"] == "done" else FAILED
    assert full.status == trusted.status == expected
    assert full.offsets == trusted.offsets
    lines = path.read_bytes().split(b"\n")
    for index, _, offset in full.last_records():
        line = path.read_bytes()[offset:].split(b"\n", 1)[0]
        assert orjson.loads(line) == [r for r in records if r["index"] == index][-1]
    assert len(lines) == 41


WRITER = """
import sys
from tokenflow_tui.store.results_file import ResultsWriter, recover
path = sys.argv[1]
writer = ResultsWriter(path, recover(path).summary)
start = writer.summary.records
for index in range(start, start + 1_000_000):
    writer.append({"id": index, "index": index, "status": "done", "result": "x" * (index % 300),
                   "usage": None, "error": None, "attempts": []})
    if index % 500 == 0:
        print(writer.flush().records, flush=True)
"""


def test_kill_9_loses_nothing_saved_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    for round_ in range(3):
        before = recover(path).records
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert writer.stdout is not None
        saved = 0
        while saved < before + 3000 * (round_ + 1):
            saved = int(writer.stdout.readline())
        writer.send_signal(signal.SIGKILL)  # while it goes on appending and writing
        writer.wait()
        recovery = recover(path)  # no damaged line, or this raises
        assert recovery.records >= saved
        # every index from 0 on, each exactly once: nothing lost, nothing twice
        assert recovery.status == bytearray([DONE]) * recovery.records
        assert recover(path).bytes_cut == 0

"""The input file: what scanning and iterating give, and that neither holds the file in memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tokenflow_tui.job import inputs
from tokenflow_tui.job.inputs import InputItem, InputSummary, iter_input, scan_input
from tokenflow_tui.job.model import Job
from tokenflow_tui.job.problems import JobError
from tokenflow_tui.job.reader import load_job

SIM_JOB = '[job]\nname = "t"\ninput = "in.jsonl"\n[endpoint]\nsimulate = true\n'
HANDLER_JOB = '[job]\nname = "t"\ninput = "in.jsonl"\n[handler]\npath = "h.py:handler"\n'


def make_job(folder: Path, lines: str | bytes, job_text: str = SIM_JOB) -> Job:
    (folder / "job.toml").write_text(job_text)
    (folder / "h.py").write_text("async def handler(trajectory):\n    return None\n")
    data = lines.encode() if isinstance(lines, str) else lines
    (folder / "in.jsonl").write_bytes(data)
    return load_job(folder / "job.toml", {})


def test_blank_lines_are_not_requests_and_do_not_count_in_the_index(tmp_path):
    job = make_job(
        tmp_path,
        '\n{"prompt": "a", "id": "first"}\n   \n'
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "b"}]}], "params": {"top_p": 0.5}}\r\n'
        '{"prompt": "c", "id": 10}',
    )
    assert scan_input(job) == InputSummary(count=3, first_ids=("first", 1, 10))
    assert list(iter_input(job)) == [
        InputItem(0, "first", {"prompt": "a", "id": "first"}),
        InputItem(
            1,
            1,
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "b"}]}], "params": {"top_p": 0.5}},
        ),
        InputItem(2, 10, {"prompt": "c", "id": 10}),
    ]


def test_a_byte_order_mark_is_skipped(tmp_path):
    job = make_job(tmp_path, b'\xef\xbb\xbf{"prompt": "a"}\n')
    assert scan_input(job) == InputSummary(count=1, first_ids=(0,))
    assert list(iter_input(job)) == [InputItem(0, 0, {"prompt": "a"})]


def test_first_ids_are_the_first_five(tmp_path):
    job = make_job(tmp_path, "".join(f'{{"prompt": "p", "id": "r{n}"}}\n' for n in range(8)))
    assert scan_input(job) == InputSummary(count=8, first_ids=("r0", "r1", "r2", "r3", "r4"))


def test_skip_leaves_requests_out_and_only_keeps_some(tmp_path):
    job = make_job(tmp_path, "".join(f'{{"prompt": "p{n}"}}\n' for n in range(6)))
    assert [item.index for item in iter_input(job, skip=lambda index: index % 2 == 0)] == [1, 3, 5]
    assert [item.params["prompt"] for item in iter_input(job, only={4, 1})] == ["p1", "p4"]
    assert [item.index for item in iter_input(job, skip=lambda index: index == 1, only=[1, 2])] == [2]


def test_skipped_lines_are_not_parsed(tmp_path):
    job = make_job(tmp_path, '{"prompt": "a"}\n')
    (tmp_path / "in.jsonl").write_text('not json\n{"prompt": "b"}\n')  # changed after loading
    assert list(iter_input(job, skip=lambda index: index == 0)) == [InputItem(1, 1, {"prompt": "b"})]


def test_iterating_stops_at_a_line_that_went_bad_after_the_scan(tmp_path):
    job = make_job(tmp_path, '{"prompt": "a"}\n{"prompt": "b"}\n')
    scan_input(job)
    (tmp_path / "in.jsonl").write_text('{"prompt": "a"}\n{"prompt": 2}\n')
    items = iter_input(job)
    assert next(items) == InputItem(0, 0, {"prompt": "a"})
    with pytest.raises(JobError) as caught:
        next(items)
    assert caught.value.lines() == [f'{tmp_path}/in.jsonl:2:1: "prompt" must be a string, found an integer']


def test_with_a_handler_any_object_is_a_request(tmp_path):
    job = make_job(tmp_path, '{"question": 1}\n{"id": "x", "messages": 3}\n', HANDLER_JOB)
    assert scan_input(job) == InputSummary(count=2, first_ids=(0, "x"))
    assert list(iter_input(job)) == [
        InputItem(0, 0, {"question": 1}),
        InputItem(1, "x", {"id": "x", "messages": 3}),
    ]


def test_an_input_that_disappeared_is_a_problem(tmp_path):
    job = make_job(tmp_path, '{"prompt": "a"}\n')
    (tmp_path / "in.jsonl").unlink()
    with pytest.raises(JobError) as caught:
        scan_input(job)
    assert caught.value.lines() == [f"{tmp_path}/in.jsonl: cannot read the input: no such file or directory"]


def test_many_bad_lines_are_counted_but_not_all_kept(tmp_path):
    job = make_job(tmp_path, "[]\n" * 1500)
    with pytest.raises(JobError) as caught:
        scan_input(job)
    error = caught.value
    assert (len(error.problems), error.total) == (inputs.KEPT_PROBLEMS, 1500)
    assert error.lines()[-1] == "… and 1480 more problems"


# ----- ids ----------------------------------------------------------------------------------


def test_a_string_id_and_the_same_number_are_one_id_and_the_refusal_says_so(tmp_path):
    job = make_job(tmp_path, '{"prompt": "a", "id": "1"}\n{"prompt": "b", "id": 1}\n')
    with pytest.raises(JobError) as caught:
        scan_input(job)
    assert caught.value.lines() == [
        f'{tmp_path}/in.jsonl:2:1: duplicate id 1: line 1 has "1"; a number and a string of the same digits are one id'
    ]


def test_a_string_of_digits_meets_a_later_lines_index(tmp_path):
    job = make_job(tmp_path, '{"prompt": "a", "id": "1"}\n{"prompt": "b"}\n{"prompt": "c", "id": "01"}\n')
    with pytest.raises(JobError) as caught:
        scan_input(job)
    assert caught.value.lines() == [
        f'{tmp_path}/in.jsonl:2:1: duplicate id 1 (its index, as it has no "id"): first used on line 1'
    ]


def test_an_id_equal_to_a_later_lines_index(tmp_path):
    job = make_job(tmp_path, '{"prompt": "a", "id": 2}\n{"prompt": "b"}\n{"prompt": "c"}\n')
    with pytest.raises(JobError) as caught:
        scan_input(job)
    assert caught.value.lines() == [
        f'{tmp_path}/in.jsonl:3:1: duplicate id 2 (its index, as it has no "id"): first used on line 1'
    ]


def test_every_repeat_of_an_id_is_reported(tmp_path):
    job = make_job(tmp_path, '{"prompt": "a", "id": "x"}\n' * 3)
    with pytest.raises(JobError) as caught:
        scan_input(job)
    assert caught.value.lines() == [
        f'{tmp_path}/in.jsonl:2:1: duplicate id "x": first used on line 1',
        f'{tmp_path}/in.jsonl:3:1: duplicate id "x": first used on line 1',
    ]


def test_hash_collisions_are_settled_by_an_exact_check(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "_mix", lambda value: 1)  # every id now collides with every other
    lines = "".join(f'{{"prompt": "p", "id": "id-{n}"}}\n' for n in range(50))
    lines += "".join('{"prompt": "p"}\n' for _ in range(50))
    job = make_job(tmp_path, lines)
    assert scan_input(job).count == 100
    (tmp_path / "in.jsonl").write_text(lines + '{"prompt": "p", "id": "id-7"}\n')
    with pytest.raises(JobError) as caught:
        scan_input(job)
    assert caught.value.lines() == [f'{tmp_path}/in.jsonl:101:1: duplicate id "id-7": first used on line 8']


def test_the_hash_set():
    values = inputs._HashSet64()
    assert len(values) == 0 and 5 not in values
    assert values.add(5) is True and values.add(5) is False
    assert values.add(0) is True and values.add(-1) is True and 0 in values and -1 in values
    for n in range(10_000):  # through many doublings of the table
        values.add(n * 7919)
    assert len(values) == 10_003 - 1  # 0 was added already
    assert all(n * 7919 in values for n in range(10_000))
    assert 7920 not in values
    assert len(values._slots) * values._slots.itemsize <= 32 * len(values)  # a Python set needs about 100


# ----- streaming ------------------------------------------------------------------------------

LINES = 200_000


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    """200k requests with unique string ids, about 15 MB."""
    folder = tmp_path_factory.mktemp("big")
    with open(folder / "in.jsonl", "w") as out:
        for n in range(LINES):
            message = f'{{"role": "user", "content": "Tell me about {n}"}}'
            out.write(f'{{"id": "request-{n:07d}", "messages": [{message}]}}\n')
    (folder / "job.toml").write_text(SIM_JOB)
    return folder


def run_measured(job_path: Path, expression: str) -> tuple[str, int]:
    """Evaluate `expression` in a fresh Python process; its printed result and how much it raised the peak RSS."""
    code = f"""
import resource, sys
from pathlib import Path
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.job.inputs import iter_input, scan_input
job = load_job(Path({str(job_path)!r}), {{}})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = {expression}
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(result, growth if sys.platform == "darwin" else growth * 1024)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result, growth = done.stdout.split()
    return result, int(growth)


def test_iterating_a_large_input_holds_one_line_at_a_time(big_input):
    assert (big_input / "in.jsonl").stat().st_size > 14_000_000
    last_id = "__import__('collections').deque(iter_input(job), maxlen=1)[0].id"
    last, growth = run_measured(big_input / "job.toml", last_id)
    assert last == f"request-{LINES - 1:07d}"
    assert growth < 4_000_000  # a read buffer and the current line, never the file


def test_scanning_a_large_input_keeps_ids_compactly(big_input):
    count, growth = run_measured(big_input / "job.toml", "scan_input(job).count")
    assert count == str(LINES)
    # 200k ids in a Python set take about 20 MB; the hash table takes 4 MB, 6 MB while it grows
    assert growth < 8_000_000

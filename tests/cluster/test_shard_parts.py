"""Without Ray: runners over the parts of an input make a run directory that export and report read
as one run; the lease book's shares, holds and budgets; the merge of the shards' states."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
from run_helpers import simulated_job

from tokenflow_tui.cluster.files import ShardFiles
from tokenflow_tui.cluster.lease import LeaseBook, ShardReport
from tokenflow_tui.cluster.merge import merge_all_rows, merge_filtered_rows, merge_state
from tokenflow_tui.job.reader import load_job
from tokenflow_tui.run.contract import RequestRow, SearchStatus, SortStatus
from tokenflow_tui.run.opening import RunError
from tokenflow_tui.run.part import InputPart
from tokenflow_tui.run.runner import JobRunner
from tokenflow_tui.store.export import STATE_REQUESTS_KEY, export_results
from tokenflow_tui.store.report import build_report
from tokenflow_tui.store.shards import SHARDS_KEY, shard_dir, shard_map
from tokenflow_tui.store.state_file import STATE_FILE, write_state


def _run(job, part: InputPart | None = None) -> int:
    runner = JobRunner(job, part=part)
    runner.open()
    try:
        return asyncio.run(runner.run())
    finally:
        runner.close()


def _kept(path: Path) -> list[tuple]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["id"], r["index"], r["status"], r["result"], len(r["attempts"])) for r in records]


def test_parts_read_as_one_run(tmp_path: Path) -> None:
    job = load_job(simulated_job(tmp_path, 50, latency_ms=1, workers=4))
    assert _run(job) == 0
    run_dir = tmp_path / "sharded"
    run_dir.mkdir()
    write_state(run_dir / STATE_FILE, {STATE_REQUESTS_KEY: 50, SHARDS_KEY: shard_map(3)})
    for number in (0, 2):  # shard 1 has not run yet
        shard_job = dataclasses.replace(job, job=dataclasses.replace(job.job, output=shard_dir(run_dir, number)))
        assert _run(shard_job, InputPart(number, 3)) == 0
    partial = export_results(run_dir, tmp_path / "partial.jsonl")
    assert (partial.written, partial.missing, partial.requests) == (33, 17, 50)
    assert [entry[1] for entry in _kept(tmp_path / "partial.jsonl")] == [i for i in range(50) if i % 3 != 1]
    # a rerun of the missing shard finishes the run
    shard_job = dataclasses.replace(job, job=dataclasses.replace(job.job, output=shard_dir(run_dir, 1)))
    assert _run(shard_job, InputPart(1, 3)) == 0
    export_results(run_dir, tmp_path / "sharded.jsonl")
    export_results(job.output, tmp_path / "single.jsonl")
    assert _kept(tmp_path / "sharded.jsonl") == _kept(tmp_path / "single.jsonl")
    report = build_report(run_dir)
    assert (report.requests, report.done, report.missing, report.records, report.attempts) == (50, 50, 0, 50, 50)
    # a run without --ray never writes into a sharded run directory
    whole = dataclasses.replace(job, job=dataclasses.replace(job.job, output=run_dir))
    with pytest.raises(RunError, match=r"holds a job split into shards over a Ray cluster; resume it with --ray$"):
        JobRunner(whole).open()
    # watch of the stopped run: the shards' files read here, as one run, the same as report
    files_before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    looked = ShardFiles(whole, 3)
    looked.open()
    try:
        snap = looked.snapshot()
        assert (snap.stats.total, snap.stats.done, snap.stats.failed) == (report.requests, report.done, 0)
        shown = tuple(v * 1000 for v in (snap.stats.latency_p50_s, snap.stats.latency_p95_s, snap.stats.latency_p99_s))
        assert shown == (report.latency_p50_ms, report.latency_p95_ms, report.latency_p99_ms)  # merged, not the slowest
        assert snap.results_path == f"{run_dir}/shard-*/results.jsonl"
        rows = looked.rows("all", 10, 20)
        assert [(row.index, row.state) for row in rows] == [(i, "done") for i in range(10, 20)]
        assert looked.row_count("failed") == 0 and looked.row_count() == 50
        assert [attempt["result"] for attempt in looked.trajectory(7)] == [rows[0].preview.replace("10", "7")]
        assert looked.set_workers(3) == "the job is not running: resume it to change it"
        # no search across shards: the table says so for as long as the search is on
        why = "not available yet for a run across shards"
        assert looked.search("hello") == looked.search_status() == SearchStatus("hello", unavailable=why)
        assert looked.sort_status("latency") == SortStatus("latency", ready=False, unavailable=why)
        assert asyncio.run(looked.run()) == 0
    finally:
        looked.close()
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == files_before


def test_a_part_runs_only_its_lines(tmp_path: Path) -> None:
    job = load_job(simulated_job(tmp_path, 10, latency_ms=1, workers=2))
    runner = JobRunner(job, part=InputPart(1, 4))
    runner.open()
    assert asyncio.run(runner.run()) == 0
    snap = runner.snapshot()
    runner.close()
    assert (snap.stats.total, snap.stats.done, snap.stats.queued) == (3, 3, 0)  # lines 1, 5 and 9
    records = [json.loads(line) for line in (job.output / "results.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in records) == [1, 5, 9]


def test_input_part_sizes() -> None:
    assert [InputPart(k, 3).size(10) for k in range(3)] == [4, 3, 3]
    assert [InputPart(k, 4).size(2) for k in range(4)] == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="shard 3 of 3 does not exist"):
        InputPart(3, 3)


def _report(number: int, active: bool = True, held_s: float = 0.0, tokens: int = 0) -> ShardReport:
    return ShardReport(number, active, held_s, "the server answers 429" if held_s else None, tokens, None)


def test_lease_book_shares_limits_holds_and_budgets() -> None:
    book = LeaseBook(3, (600.0, 30_000), (1000, 0.0))
    # not heard from yet, the other shards count as working: a third each, never more in all
    first = book.lease(_report(0, tokens=100))
    assert (first.requests_per_minute, first.tokens_per_minute) == (200.0, 10_000)
    book.lease(_report(1, tokens=300))
    book.lease(_report(2, active=False, tokens=50))  # done with its part
    lease = book.lease(_report(0, tokens=100))
    assert (lease.requests_per_minute, lease.tokens_per_minute) == (300.0, 15_000)
    assert lease.max_total_tokens == 1000 - 300 - 50  # the job's budget less what the others used
    assert lease.hold_s == 0
    book.lease(_report(1, held_s=5.0, tokens=300))
    held = book.lease(_report(0, tokens=100))
    assert 4.0 < held.hold_s <= 5.0 and held.hold_because == "the server answers 429"
    spent = book.lease(_report(1, tokens=1200))
    assert spent.max_total_tokens == 850  # below the 1,200 shard 1 used: the job's budget is spent
    book.grant_more()  # the user resumes: as much again beyond the 1,350 the job used
    assert book.lease(_report(1, tokens=1200)).max_total_tokens == 1350 + 1000 - 100 - 50
    book.set_limits(0.0, 0)
    book.set_budget(0, 0.0)
    free = book.lease(_report(0, tokens=100))
    assert (free.requests_per_minute, free.tokens_per_minute, free.max_total_tokens) == (0.0, 0, 0)


def test_merged_state_and_rows() -> None:
    assert merge_state(["paused", "running", "done"]) == "running"
    assert merge_state(["paused", "done"]) == "paused"
    assert merge_state(["done", "done"]) == "done"
    assert merge_state(["pausing", "paused"]) == "pausing"

    def row(index: int, state: str) -> RequestRow:
        return RequestRow(index, f"q{index}", state, 0, "", None, "")

    # each shard's "all" rows cover every index; index i is shard i % 2's
    shard0 = [row(i, "done" if i % 2 == 0 else "queued") for i in range(4, 8)]
    shard1 = [row(i, "failed" if i % 2 == 1 else "queued") for i in range(4, 8)]
    assert [(r.index, r.state) for r in merge_all_rows([shard0, shard1], 2, 4)] == [
        (4, "done"),
        (5, "failed"),
        (6, "done"),
        (7, "failed"),
    ]
    filtered = merge_filtered_rows([[row(0, "failed"), row(4, "failed")], [row(1, "failed"), row(3, "failed")]], 1, 3)
    assert [r.index for r in filtered] == [1, 3]


def test_the_rules_panel_and_the_endpoints_add_up_over_the_shards() -> None:
    from tokenflow_tui.cluster.merge import merge_endpoints, merge_rules
    from tokenflow_tui.run.contract import EndpointView, RuleLine

    rules = [
        (RuleLine("check json", "json", 10, 4, 300, None), RuleLine("rule 1", "check_failed = json", 9, 4, 300, None)),
        (RuleLine("check json", "json", 5, 1, 50, 0.5), RuleLine("rule 1", "check_failed = json", 5, 1, 50, 0.5)),
    ]
    assert merge_rules(rules) == (
        RuleLine("check json", "json", 15, 5, 350, 0.5),
        RuleLine("rule 1", "check_failed = json", 14, 5, 350, 0.5),
    )
    sending = EndpointView("main", "sending", None, 2.0, 100, 3, 90, 10.0, 600.0)
    paused = EndpointView("main", "paused", "it refused the key", 2.0, 50, 50, 0, 0.0, 600.0)
    assert merge_endpoints([(sending,), (paused,)]) == (
        EndpointView("main", "paused", "it refused the key", 2.0, 150, 53, 90, 10.0, 600.0),
    )
    assert merge_rules([]) == () and merge_endpoints([]) == ()


def test_each_shard_takes_an_even_share_of_every_endpoints_own_limits(tmp_path: Path) -> None:
    from tokenflow_tui.cluster.shard import Shard

    job = tmp_path / "job.toml"
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    job.write_text(
        '[job]\nname = "t"\ninput = "prompts.jsonl"\n\n'
        '[[endpoints]]\nname = "a"\nsimulate = true\nrequests_per_minute = 900\ntokens_per_minute = 1000\n\n'
        '[[endpoints]]\nname = "b"\nsimulate = true\n'
    )
    shard = Shard(load_job(job), 1, 3, str(tmp_path / "run"), "m", {})  # the class the driver makes an actor of
    limits = [(e.name, e.requests_per_minute, e.tokens_per_minute) for e in shard._job.endpoints]
    assert limits == [("a", 300.0, 334), ("b", 0.0, 0)]

"""A job across a local multi-node Ray cluster (ray.cluster_utils.Cluster): the same export as one
machine, controls that reach every shard, a node removed mid-run, the job-wide rate limit.

One cluster for the module (2 nodes of 3 logical CPUs; the actors take 1 each), real simulators over
loopback, real shard actors: nothing of Ray is mocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # as tokenflow_tui.cluster does: nothing leaves the machine
ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'tokenflow-tui[ray]'")

from ray.cluster_utils import Cluster  # noqa: E402
from run_helpers import write_input, write_job  # noqa: E402
from suite_helpers import ThreadedSimulator, file_figures  # noqa: E402

from tokenflow_tui.cluster.driver import ClusterRun  # noqa: E402
from tokenflow_tui.job.reader import load_job  # noqa: E402
from tokenflow_tui.run.runner import JobRunner  # noqa: E402
from tokenflow_tui.sim import SimulatorConfig  # noqa: E402
from tokenflow_tui.store.export import export_results  # noqa: E402
from tokenflow_tui.store.report import build_report  # noqa: E402
from tokenflow_tui.store.shards import shard_dir  # noqa: E402

# one worker of `-n 2` runs them all, on the module's one cluster
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("ray-cluster")]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    # two nodes, not three: every node is a raylet and its agents, and the machine is shared
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "include_dashboard": False})
    nodes.add_node(num_cpus=3)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, log_to_driver=False)
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def _job(directory: Path, base_url: str, count: int, workers: int, limits: dict[str, Any] | None = None) -> Any:
    write_input(directory / "prompts.jsonl", count)
    sections: dict[str, Any] = {
        "job": {"name": "c", "input": "prompts.jsonl", "output": "out"},
        "endpoint": {"base_url": base_url, "model": "m", "timeout_s": 5},
        "request": {"params": {"max_tokens": 16}},
        "workers": {"count": workers},
        "retry": {"max_attempts": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
    }
    if limits:
        sections["limits"] = limits
    return load_job(write_job(directory, sections))


def _kept(line: str) -> tuple[Any, ...]:
    """What a record says of its request that does not depend on timing."""
    record = json.loads(line)
    return record["id"], record["index"], record["status"], record["result"], record["usage"], len(record["attempts"])


async def _until(predicate: Any, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


def _snapshots(run: ClusterRun) -> list[Any]:
    return [reply["snapshot"] for reply in run.shard_replies() if reply and "snapshot" in reply]


def test_three_shards_export_as_one_machine(cluster: Any, tmp_path: Path) -> None:
    with ThreadedSimulator(SimulatorConfig(latency_ms=2, seed=3)) as sim:
        one = tmp_path / "one"
        one.mkdir()
        runner = JobRunner(_job(one, sim.base_url, 240, 8))
        runner.open()
        assert asyncio.run(runner.run()) == 0
        runner.close()
        three = tmp_path / "three"
        three.mkdir()
        run = ClusterRun(_job(three, sim.base_url, 240, 24), shards=3)
        run.open()
        assert asyncio.run(run.run()) == 0
        assert [s.stats.total for s in _snapshots(run)] == [80, 80, 80]
        assert run.snapshot().stats.done == 240
        rows = run.rows("all", 78, 83)
        assert [(r.index, r.state) for r in rows] == [(i, "done") for i in range(78, 83)]
        run.close()
    exports = []
    for directory in (one, three):
        out = directory / "export.jsonl"
        summary = export_results(directory / "out", out)
        assert (summary.written, summary.missing) == (240, 0)
        exports.append([_kept(line) for line in out.read_text().splitlines()])
    assert exports[0] == exports[1]
    assert [entry[1] for entry in exports[1]] == list(range(240))
    report = build_report(three / "out")
    assert (report.requests, report.done, report.failed, report.missing, report.records) == (240, 240, 0, 0, 240)
    # each shard holds its own part only: index % 3
    for number in range(3):
        indexes = file_figures(shard_dir(three / "out", number) / "results.jsonl").indexes
        assert sorted(indexes) == list(range(number, 240, 3))


def test_controls_reach_every_shard(cluster: Any, tmp_path: Path) -> None:
    with ThreadedSimulator(SimulatorConfig(latency_ms=100, seed=4)) as sim:
        run = ClusterRun(_job(tmp_path, sim.base_url, 3000, 6), shards=3)
        run.open()

        async def drive() -> None:
            running = asyncio.ensure_future(run.run())
            await _until(lambda: len(_snapshots(run)) == 3 and run.snapshot().state == "running")
            await run.pause()
            await _until(lambda: [s.state for s in _snapshots(run)] == ["paused"] * 3)
            paused_at = sim.requests()
            assert run.set_workers(12) is None
            assert run.set_limits(600, 0) is None
            await run.resume()
            await _until(lambda: [s.state for s in _snapshots(run)] == ["running"] * 3)
            await _until(lambda: [s.stats.workers for s in _snapshots(run)] == [4, 4, 4])
            # each shard's lease: a third of the job-wide 600 a minute
            await _until(lambda: [s.traffic.requests_per_minute for s in _snapshots(run)] == [200.0] * 3)
            assert run.snapshot().traffic.requests_per_minute == 600
            assert sim.requests() > paused_at
            assert run.set_workers(2) == "at least 3 workers: one for each shard"
            assert await run.shutdown() == 130
            await running

        asyncio.run(drive())
    finished = sum(file_figures(shard_dir(tmp_path / "out", k) / "results.jsonl").lines for k in range(3))
    assert finished == build_report(tmp_path / "out").records
    kinds = [event.kind for event in run.snapshot().events]
    assert kinds.count("pause") == 1 and "workers" in kinds and "limits" in kinds


def test_a_shard_that_cannot_come_back_is_named_and_a_rerun_finishes_it(cluster: Any, tmp_path: Path) -> None:
    count = 300
    with ThreadedSimulator(SimulatorConfig(latency_ms=20, seed=7)) as sim:
        job = _job(tmp_path, sim.base_url, count, 6)
        run = ClusterRun(job, shards=3, max_restarts=0, lost_after_s=1.0)
        run.open()

        async def drive() -> int:
            running = asyncio.ensure_future(run.run())
            await _until(lambda: len(_snapshots(run)) == 3 and run.snapshot().stats.finished >= 30)
            ray.kill(run.shard_actor(1), no_restart=True)
            return await running

        assert asyncio.run(drive()) == 130
        reason = run.snapshot().reason or ""
        assert reason.startswith("shard 1 cannot come back (") and reason.endswith(
            " of 100 finished); run the same command again to finish it"
        ), reason
        run.close()
        rerun = ClusterRun(job)  # the shard count comes from the run directory
        rerun.open()
        assert rerun.shard_count == 3
        assert asyncio.run(rerun.run()) == 0
        rerun.close()
    done: dict[int, int] = {}
    for k in range(3):
        for index, n in file_figures(shard_dir(tmp_path / "out", k) / "results.jsonl").done.items():
            done[index] = done.get(index, 0) + n
    assert sorted(done) == list(range(count)) and max(done.values()) == 1


def test_job_wide_rate_limit_holds_with_three_shards(cluster: Any, tmp_path: Path) -> None:
    rate = 2400  # a minute: 40 a second, job-wide
    # the hidden limit, 10 % above the job's over 10 s windows: a job that goes faster gets 429s
    config = SimulatorConfig(latency_ms=5, seed=6, rpm_limit=int(rate / 6 * 1.1), rate_window_s=10)
    with ThreadedSimulator(config) as sim:
        run = ClusterRun(_job(tmp_path, sim.base_url, 2000, 12, {"requests_per_minute": rate}), shards=3)
        run.open()

        async def drive() -> float:
            running = asyncio.ensure_future(run.run())
            await _until(lambda: sim.requests() >= 80)  # every shard has its lease by now
            start, at = sim.requests(), time.monotonic()
            await _until(lambda: sim.requests() >= start + 200)
            measured = (sim.requests() - start) / (time.monotonic() - at) * 60
            await run.shutdown()
            await running
            return measured

        measured = asyncio.run(drive())
        refused = sim.stats.outcomes.get("429", 0) + sim.stats.outcomes.get("rate_limited", 0)
    assert abs(measured - rate) <= 0.1 * rate, measured
    assert refused == 0, sim.stats.outcomes


def test_node_removed_mid_run_loses_nothing(cluster: Any, tmp_path: Path) -> None:
    count = 900
    with ThreadedSimulator(SimulatorConfig(latency_ms=20, seed=5)) as sim:
        run = ClusterRun(_job(tmp_path, sim.base_url, count, 6), shards=3, lost_after_s=90)
        run.open()

        async def drive() -> int:
            running = asyncio.ensure_future(run.run())
            await _until(lambda: len(_snapshots(run)) == 3 and run.snapshot().stats.finished >= 90)
            head = cluster.head_node.node_id
            victims = {reply["node"] for reply in run.shard_replies() if reply and reply["node"] != head}
            assert victims, "every shard landed on the head node"
            node = next(n for n in cluster.worker_nodes if n.node_id in victims)
            cluster.remove_node(node)
            return await running

        assert asyncio.run(drive()) == 0
        assert sum(run.restarts()) >= 1
        run.close()  # the module's last test: its cluster is left with the head node alone
    figures = [file_figures(shard_dir(tmp_path / "out", k) / "results.jsonl") for k in range(3)]
    done: dict[int, int] = {}
    for part in figures:
        assert part.invalid_lines == 0
        for index, n in part.done.items():
            done[index] = done.get(index, 0) + n
    assert sorted(done) == list(range(count))  # 0 lost
    assert max(done.values()) == 1  # 0 duplicated
    assert export_results(tmp_path / "out", tmp_path / "all.jsonl").written == count

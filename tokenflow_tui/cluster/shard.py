"""One shard of a cluster run: a JobRunner over the input lines `index % count == number`, on an async
Ray actor. It writes RUN_DIR/shard-K/ and, when its actor is restarted (a node died), resumes from
those files. Every call of the driver carries the settings it wants (workers, paused, …) with a
version, so that a restarted actor comes back as the driver left it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import resource
import socket
import time
from pathlib import Path
from typing import Any

from ..job.model import Job
from ..job.problems import JobError
from ..run.contract import ROW_FILTERS
from ..run.exit_codes import EXIT_INTERRUPTED
from ..run.opening import RunError
from ..run.part import InputPart
from ..run.runner import JobRunner
from ..store.shards import shard_dir
from . import import_ray
from .lease import Lease, ShardReport

LEASE_INTERVAL_S = 1.0
MARKER_FILE = ".tokenflow-cluster"  # the driver writes it in RUN_DIR; every shard must see it
# of a poll: the last events of the shard's log, for the driver's (the whole log stays in the shard's folder)
EVENTS_SHOWN = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """What the driver wants of every shard; `version` grows with every change."""

    version: int
    workers: int  # this shard's part of the total
    paused: bool = False


class Shard:
    """The actor's state: the runner, its run, and the lease loop."""

    def __init__(self, job: Job, number: int, count: int, run_dir: str, marker: str, options: dict[str, Any]) -> None:
        self._number, self._count = number, count
        self._run_dir = Path(run_dir)
        self._marker = marker
        self._options = options
        self._lease_book = options.get("lease")
        output = shard_dir(self._run_dir, number)
        limits = job.limits
        # until the first lease, a share of the job's limits: the shards together never go faster
        shared = dataclasses.replace(
            limits,
            requests_per_minute=limits.requests_per_minute / count,
            tokens_per_minute=-(-limits.tokens_per_minute // count),
        )
        # each of [[endpoints]] keeps its own limits: an even share on each shard (the lease book shares the job's)
        endpoints = tuple(
            dataclasses.replace(
                named,
                requests_per_minute=named.requests_per_minute / count,
                tokens_per_minute=-(-named.tokens_per_minute // count),
            )
            for named in job.endpoints
        )
        self._job = dataclasses.replace(
            job, job=dataclasses.replace(job.job, output=output), limits=shared, endpoints=endpoints
        )
        self._runner: JobRunner | None = None
        self._run: asyncio.Task[int] | None = None
        self._leases: asyncio.Task[None] | None = None
        self._applied = -1
        self._shut = False  # shut down: saved and closed; no setting starts it again
        self._error: str | None = None
        self._started = time.time()

    # ----- the driver's calls -----------------------------------------------------------------

    def open(self) -> str | None:
        """Check the shared directory and open the shard's output; why not, in a sentence."""
        if self._runner is not None or self._error is not None:
            return self._error
        try:
            seen = (self._run_dir / MARKER_FILE).read_text()
        except OSError:
            seen = None
        if seen != self._marker:
            self._error = (
                f"shard {self._number} on {socket.gethostname()} cannot see {self._run_dir / MARKER_FILE}, which the "
                f"driver wrote: the run directory must be on storage every node sees (a shared file system)"
            )
            return self._error
        runner = JobRunner(
            self._job,
            retry_failed=bool(self._options.get("retry_failed")),
            accept_changes=bool(self._options.get("accept_changes")),
            part=InputPart(self._number, self._count),
        )
        try:
            runner.open()
        except (JobError, RunError) as error:
            self._error = f"shard {self._number}: {error}"
            return self._error
        self._runner = runner
        return None

    async def poll(self, settings: Settings, windows: list[tuple[str, int, int]]) -> dict[str, Any]:
        """Start or go on as `settings` say; the snapshot, row counts and the rows of `windows`."""
        runner = await self._ready(settings)
        if runner is None:
            return {"error": self._error}
        snapshot = runner.snapshot()
        code = None
        if self._run is not None and self._run.done():
            failure = None if self._run.cancelled() else self._run.exception()
            if failure is not None:
                self._error = f"shard {self._number} stopped: {failure}"
                return {"error": self._error}
            code = EXIT_INTERRUPTED if self._run.cancelled() else self._run.result()
        return {
            "snapshot": dataclasses.replace(snapshot, events=tuple(snapshot.events[-EVENTS_SHOWN:])),
            "latency": runner.latency_data(),
            "counts": {name: runner.row_count(name) for name in ROW_FILTERS},
            "rows": {window: runner.rows(*window) for window in windows},
            "code": code,
            "cpu_s": time.process_time(),
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "host": socket.gethostname(),
            "node": import_ray().get_runtime_context().get_node_id(),
            "started": self._started,
        }

    async def apply(self, settings: Settings) -> None:
        await self._ready(settings)

    async def stop_now(self) -> None:
        if self._runner is not None:
            await self._runner.stop_now()

    async def save(self) -> int:
        """Save now; the records in the shard's results.jsonl."""
        if self._runner is None:
            return 0
        return (await self._runner.save()).results

    async def shutdown(self) -> int:
        """Pause softly, save and let go of the shard's output; its exit code."""
        if self._runner is None:
            return 0
        self._shut = True
        code = await self._runner.shutdown()
        await self._stop_leases()
        return code

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        """Checks the values only (the lease book gives each shard its share)."""
        traffic = self._runner.traffic if self._runner is not None else None
        if traffic is None:
            return "the job has not started yet"
        return traffic.set_limits(requests_per_minute, tokens_per_minute)

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        if self._runner is None:
            return "the job has not started yet"
        return self._runner.set_budget(max_total_tokens, max_cost_usd)

    def reset_traffic(self) -> str | None:
        return self._runner.reset_traffic() if self._runner is not None else "the job has not started yet"

    async def retry(self, indexes: list[int]) -> int:
        if self._runner is None:
            return 0
        queued = self._runner.retry(indexes)
        if queued and self._run is not None and self._run.done():
            self._run = asyncio.ensure_future(self._runner.run())  # a finished run takes them in a new round
        return queued

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        return self._runner.trajectory(index) if self._runner is not None else []

    def failed_groups(self) -> dict[str, list[int]]:
        return self._runner.failed_groups() if self._runner is not None else {}

    def rows(self, row_filter: str, start: int, stop: int) -> list[Any]:
        return self._runner.rows(row_filter, start, stop) if self._runner is not None else []

    # ----- internals ------------------------------------------------------------------------------

    async def _ready(self, settings: Settings) -> JobRunner | None:
        """The runner, opened and running, with `settings` applied when they are newer than the last."""
        if self._error is not None or (self._runner is None and self.open() is not None):
            return None
        runner = self._runner
        assert runner is not None
        if self._run is None:
            runner.set_workers(settings.workers)
            self._run = asyncio.ensure_future(runner.run())
            self._leases = asyncio.ensure_future(self._lease_loop())
            await _started(runner)
        if settings.version > self._applied and not self._shut:
            self._applied = settings.version
            if runner.snapshot().stats.workers != settings.workers:
                runner.set_workers(settings.workers)
            if settings.paused:
                await runner.pause()
            else:
                await runner.resume()
        return runner

    async def _lease_loop(self) -> None:
        """Once a second: tell the lease book what this shard used, and take its lease."""
        book = self._lease_book
        if book is None:
            return
        last: Lease | None = None
        while True:
            await asyncio.sleep(LEASE_INTERVAL_S)
            runner = self._runner
            traffic = runner.traffic if runner is not None else None
            if runner is None or traffic is None:
                continue
            snap = runner.snapshot()
            view = snap.traffic
            report = ShardReport(
                self._number,
                snap.state in ("running", "starting") and snap.stats.finished < (snap.stats.total or 0),
                view.held_s,
                view.held_because,
                view.tokens_used,
                view.cost_usd,
            )
            try:
                lease: Lease = await book.lease.remote(report)
            except Exception:  # the lease actor is being restarted: the last lease holds meanwhile
                continue
            if last is None or (lease.requests_per_minute, lease.tokens_per_minute) != (
                last.requests_per_minute,
                last.tokens_per_minute,
            ):
                traffic.set_limits(lease.requests_per_minute, lease.tokens_per_minute)
            if lease.hold_s > 0:
                traffic.hold_shared(lease.hold_s, lease.hold_because)
            if last is None or (lease.max_total_tokens, lease.max_cost_usd) != (
                last.max_total_tokens,
                last.max_cost_usd,
            ):
                traffic.set_budget(lease.max_total_tokens, lease.max_cost_usd)
            last = lease

    async def _stop_leases(self) -> None:
        if self._leases is not None:
            self._leases.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._leases


async def _started(runner: JobRunner, turns: int = 1000) -> None:
    """Let the run start (its traffic control built), a bounded number of turns of the loop."""
    for _ in range(turns):
        if runner.traffic is not None or runner.snapshot().state != "starting":
            return
        await asyncio.sleep(0.001)

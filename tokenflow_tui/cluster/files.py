"""A run across shards that is not running, read from its files: `tokenflow watch` / `attach` of it.

Each shard's output is opened here, in this process, by a runner that only looks (no Ray, nothing
written), and the front-end contract is served from them merged as the driver merges live shards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..job.model import Job
from ..run.contract import RequestRow, RunSnapshot, SaveReport
from ..run.exit_codes import EXIT_DONE, EXIT_INTERRUPTED
from ..run.part import InputPart
from ..run.runner import JobRunner
from ..store.shards import shard_dir
from .merge import NoSearchAcrossShards, merge_all_rows, merge_filtered_rows, merge_groups, merge_snapshots

NOT_RUNNING = "the job is not running: resume it to change it"


class ShardFiles(NoSearchAcrossShards):
    """Implements `run.contract.RunControl` over the shards' files, read-only; `open`, then `close`."""

    def __init__(self, job: Job, count: int) -> None:
        self.job = job
        self.output_dir = job.output
        self._count = count
        self._requests = 0  # of the whole input, once open: every shard's table has an entry for each
        self._runners = [
            JobRunner(
                dataclasses.replace(job, job=dataclasses.replace(job.job, output=shard_dir(job.output, number))),
                confirm=lambda question: False,
                part=InputPart(number, count),
                looking=True,
            )
            for number in range(count)
        ]

    def open(self) -> None:
        """Open every shard's output (RunError, JobError as the runner raises them)."""
        try:
            for runner in self._runners:
                runner.open()
        except BaseException:
            self.close()
            raise
        self._requests = sum(runner.snapshot().stats.total or 0 for runner in self._runners)

    def close(self) -> None:
        for runner in self._runners:
            runner.close()

    async def run(self) -> int:
        return EXIT_DONE if self._finished() else EXIT_INTERRUPTED

    async def shutdown(self) -> int:
        return await self.run()

    def _finished(self) -> bool:
        stats = self.snapshot().stats
        return stats.total is not None and stats.finished >= stats.total

    def snapshot(self) -> RunSnapshot:
        parts = [runner.snapshot() for runner in self._runners]
        limits = self.job.limits
        events = [
            dataclasses.replace(event, text=f"shard {number}: {event.text}")
            for number, part in enumerate(parts)
            for event in part.events
        ]
        return merge_snapshots(
            parts,
            job_name=self.job.name,
            output_dir=str(self.output_dir),
            total=self._requests,
            reason=None,
            limits=(limits.requests_per_minute, limits.tokens_per_minute),
            budget=(limits.max_total_tokens, limits.max_cost_usd),
            events=sorted(events, key=lambda event: event.at),
            latency=[runner.latency_data() for runner in self._runners],
        )

    def row_count(self, row_filter: str = "all", sort: str = "input") -> int:
        if row_filter == "all":
            return self._requests
        return sum(runner.row_count(row_filter) for runner in self._runners)

    def rows(self, row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        if row_filter == "all":
            return merge_all_rows([runner.rows("all", start, stop) for runner in self._runners], self._count, start)
        return merge_filtered_rows([runner.rows(row_filter, 0, stop) for runner in self._runners], start, stop)

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        return self._runners[index % self._count].trajectory(index)

    def failed_groups(self) -> dict[str, list[int]]:
        return merge_groups([runner.failed_groups() for runner in self._runners])

    # the view that shows it is read-only: a change is refused with a sentence
    async def pause(self) -> None:
        return None

    async def resume(self) -> None:
        return None

    async def stop_now(self) -> None:
        return None

    def set_workers(self, n: int) -> str | None:
        return NOT_RUNNING

    async def save(self) -> SaveReport:
        return SaveReport(0, str(self.output_dir), 0.0)

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        return NOT_RUNNING

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        return NOT_RUNNING

    def reset_traffic(self) -> str | None:
        return NOT_RUNNING

    def retry(self, indexes: Sequence[int]) -> int:
        return 0

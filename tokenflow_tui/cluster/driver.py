"""The driver of a cluster run: starts the lease book and one shard actor per part of the input, and
combines them into one RunControl (run/contract.py) that the dashboard or the headless lines host
unchanged. Snapshots and visible rows are pulled from every shard a few times a second and served
from that copy; controls are fanned out to every shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..job.fingerprint import fingerprint
from ..job.formats.reading import input_description
from ..job.inputs import scan_input
from ..job.model import Job
from ..run.contract import RequestRow, RunEvent, RunSnapshot, SaveReport
from ..run.events import EventLog
from ..run.exit_codes import EXIT_DONE, EXIT_INTERRUPTED
from ..store.errors import StoreError
from ..store.export import STATE_INPUT_KEY, STATE_REQUESTS_KEY
from ..store.results_file import RESULTS_FILE
from ..store.shards import SHARDS_KEY, shard_count, shard_map
from ..store.state_file import STATE_FILE, read_state, write_state
from ..traffic.budget import format_usd
from ..traffic.control import budget_refusal, limits_refusal
from . import ClusterError, import_ray
from .lease import LeaseBook
from .merge import NoSearchAcrossShards, merge_all_rows, merge_filtered_rows, merge_groups, merge_snapshots
from .shard import MARKER_FILE, Settings, Shard

POLL_INTERVAL_S = 0.5
CALL_TIMEOUT_S = 10.0  # a shard that does not answer a call this long is restarting (or gone)
LOST_AFTER_S = 120.0  # … and one that has not answered this long cannot come back
OPEN_TIMEOUT_S = 300.0  # actors start (a worker process each) and open their output (a scan of the input)
_DRIVER_KINDS = frozenset({"pause", "resume", "stop", "workers", "limits", "budget", "save", "open", "done"})


@dataclasses.dataclass
class _ShardState:
    """What the driver knows of one shard: its last answer, and since when it has not answered."""

    actor: Any
    reply: dict[str, Any] | None = None
    failing_since: float | None = None
    restarts: int = 0  # answers from a new actor (its start time changed)
    rows: dict[tuple[str, int, int], list[RequestRow]] = dataclasses.field(default_factory=dict)


class ClusterRun(NoSearchAcrossShards):
    """One job across shard actors; implements `run.contract.RunControl`, plus `open` and `close`."""

    def __init__(
        self,
        job: Job,
        *,
        shards: int | None = None,
        workers: int | None = None,
        retry_failed: bool = False,
        accept_changes: bool = False,
        shard_cpus: float = 1.0,
        max_restarts: int = -1,
        poll_interval_s: float = POLL_INTERVAL_S,
        lost_after_s: float = LOST_AFTER_S,
    ) -> None:
        self.job = job
        self.output_dir = job.output
        self._asked_shards = shards or job.cluster.shards or None
        self._workers = workers or job.workers.count
        self._options = {"retry_failed": retry_failed, "accept_changes": accept_changes}
        self._shard_cpus = shard_cpus
        self._max_restarts = max_restarts
        self._poll_interval_s = poll_interval_s
        self._lost_after_s = lost_after_s
        self._shards: list[_ShardState] = []
        self._count = 0
        self._requests = 0
        self._version = 0
        self._paused = False
        self._limits = (job.limits.requests_per_minute, job.limits.tokens_per_minute)
        self._budget = (job.limits.max_total_tokens, job.limits.max_cost_usd)
        self._lease: Any = None
        self._windows: dict[tuple[str, int, int], float] = {}  # rows asked for, by when last asked
        self._shutdown = asyncio.Event()
        self._closed = False
        self._pending: set[asyncio.Future[Any]] = set()
        self._events = EventLog(self.output_dir, time.time)
        self._ray: Any = None
        self.notes: list[str] = []
        self.requeued = 0

    # ----- opening ---------------------------------------------------------------------------------

    @property
    def shard_count(self) -> int:
        return self._count

    def open(self) -> None:
        """Write the run directory's shard map and start the shards; ClusterError (a sentence) when they cannot."""
        ray = self._ray = import_ray()
        run_dir = self.output_dir
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ClusterError(f"cannot make the run directory {run_dir} ({error.strerror})") from None
        state = read_state(run_dir / STATE_FILE)
        saved = shard_count(state, run_dir / STATE_FILE)
        if saved is None and (run_dir / RESULTS_FILE).exists():
            raise ClusterError(f"{run_dir} holds a single-machine run; resume it without --ray, or set another output")
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        count = saved or self._asked_shards or max(nodes, 1)
        if saved is not None and self._asked_shards not in (None, saved):
            raise ClusterError(
                f"{run_dir} was split into {saved} shards; resume it with --shards {saved} (or without --shards)"
            )
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < count * self._shard_cpus:
            raise ClusterError(
                f"{count} shards need {count * self._shard_cpus:g} CPUs of the cluster (one actor each), "
                f"and it has {cpus:g}; add nodes or ask for fewer with --shards"
            )
        self._count = count
        if state is not None and type(state.get(STATE_REQUESTS_KEY)) is int:
            self._requests = state[STATE_REQUESTS_KEY]
        else:
            self._requests = scan_input(self.job).count  # a bad input is refused here, before any actor starts
        self._events.load()
        marker = secrets.token_hex(16)
        (run_dir / MARKER_FILE).write_text(marker)
        write_state(
            run_dir / STATE_FILE,
            {
                "version": 1,
                "job": self.job.name,
                "fingerprint": fingerprint(self.job),
                STATE_REQUESTS_KEY: self._requests,
                STATE_INPUT_KEY: input_description(self.job),
                SHARDS_KEY: shard_map(count),
                "saved_at": time.time(),
            },
        )
        self._lease = (
            ray.remote(LeaseBook)
            .options(num_cpus=0, max_restarts=-1, max_task_retries=-1)
            .remote(count, self._limits, self._budget)
        )
        actor_class = ray.remote(Shard)
        options = {**self._options, "lease": self._lease}
        self._shards = [
            _ShardState(
                actor_class.options(
                    num_cpus=self._shard_cpus,
                    max_restarts=self._max_restarts,
                    scheduling_strategy="SPREAD",
                ).remote(self.job, number, count, str(run_dir), marker, options)
            )
            for number in range(count)
        ]
        try:
            problems = ray.get([shard.actor.open.remote() for shard in self._shards], timeout=OPEN_TIMEOUT_S)
        except Exception as error:
            self.close()
            raise ClusterError(f"the shards did not start: {error}") from None
        problems = [p for p in problems if p]
        if problems:
            self.close()
            raise ClusterError("; ".join(problems))
        self._events.note("open", f"{count} shards over {nodes} nodes: {self._requests:,} requests")

    # ----- RunControl ------------------------------------------------------------------------------

    async def run(self) -> int:
        """Poll the shards until each is finished (or cannot come back), or until `shutdown()`."""
        while not self._shutdown.is_set():
            await self._poll_all()
            if all(self._finished(shard) or self._lost(shard) for shard in self._shards):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shutdown.wait(), self._poll_interval_s)
        code = self._exit_code()
        if code == EXIT_DONE:
            self._events.note("done", "every shard has a final record for each of its requests")
        return code

    async def shutdown(self) -> int:
        """Every shard pauses softly, saves and lets go of its output."""
        try:
            await self._each("shutdown")
            await self._poll_all()
        finally:
            self._shutdown.set()
        self.close()
        return self._exit_code()

    def snapshot(self) -> RunSnapshot:
        parts = [shard.reply["snapshot"] for shard in self._shards if shard.reply and "snapshot" in shard.reply]
        latency = [shard.reply["latency"] for shard in self._shards if shard.reply and "latency" in shard.reply]
        return merge_snapshots(
            parts,
            job_name=self.job.name,
            output_dir=str(self.output_dir),
            total=self._requests,
            reason=self._problems(),
            limits=self._limits,
            budget=self._budget,
            events=self._merged_events(),
            latency=latency,
        )

    def row_count(self, row_filter: str = "all", sort: str = "input") -> int:
        if row_filter == "all":
            return self._requests
        return sum(
            shard.reply["counts"][row_filter] for shard in self._shards if shard.reply and "counts" in shard.reply
        )

    def rows(self, row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        stop = min(stop, self.row_count(row_filter))
        window = (row_filter, 0 if row_filter != "all" else start, stop)
        self._windows[window] = time.monotonic()
        if all(window in shard.rows for shard in self._shards):
            parts = [shard.rows[window] for shard in self._shards]
        else:  # a window not pulled yet (a scroll): asked at once, then kept fresh by the polls
            parts = self._call_each("rows", *window)
        if row_filter == "all":
            return merge_all_rows(parts, self._count, start)
        return merge_filtered_rows(parts, start, stop)

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        shard = self._shards[index % self._count]
        return self._call(shard, "trajectory", index) or []

    def failed_groups(self) -> dict[str, list[int]]:
        return merge_groups(self._call_each("failed_groups"))

    async def pause(self) -> None:
        self._paused = True
        self._events.note("pause", "paused")
        await self._apply_all()

    async def resume(self) -> None:
        self._paused = False
        self._events.note("resume", "resumed")
        self._lease.grant_more.remote()  # a spent budget allows as much again, job-wide
        await self._apply_all()

    async def stop_now(self) -> None:
        self._events.note("stop", "stopped now: the requests in flight went back to the queue")
        await self._each("stop_now")

    def set_workers(self, n: int) -> str | None:
        if n < self._count:
            return f"at least {self._count:,} workers: one for each shard"
        cap = max(self._workers, self.job.workers.max) * self._count
        refusal = None
        if n > cap:
            refusal = f"{cap:,} workers, not {n:,}: the job's limit ([workers] max on each of {self._count} shards)"
            n = cap
        self._events.note_change("workers", "workers", f"{self._workers:,}", f"{n:,}")
        self._workers = n
        self._background(self._apply_all())
        return refusal

    async def save(self) -> SaveReport:
        results = await self._each("save")
        saved = SaveReport(sum(r for r in results if r is not None), str(self.output_dir), time.time())
        self._events.note("save", f"saved {saved.results:,} results in {self._count} shards")
        await asyncio.to_thread(self._events.flush)
        return saved

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        refusal = limits_refusal(requests_per_minute, tokens_per_minute)
        if refusal is not None:
            return refusal
        self._limits = (requests_per_minute, int(tokens_per_minute))
        self._lease.set_limits.remote(*self._limits)  # each shard takes its share at its next lease (≤ 1 s)
        self._events.note(
            "limits",
            f"limits: {requests_per_minute:g} requests/min, {tokens_per_minute:,} tokens/min (0: none), job-wide",
        )
        return None

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        limits = self.job.limits
        priced = limits.price_input_per_million_usd is not None and limits.price_output_per_million_usd is not None
        refusal = budget_refusal(max_total_tokens, max_cost_usd, priced)
        if refusal is not None:
            return refusal
        self._budget = (int(max_total_tokens), float(max_cost_usd))
        self._lease.set_budget.remote(*self._budget)
        self._events.note(
            "budget", f"budgets: {max_total_tokens:,} tokens, {format_usd(max_cost_usd)} (0: none), job-wide"
        )
        return None

    def reset_traffic(self) -> str | None:
        self._background(self._each("reset_traffic"))
        return None

    def retry(self, indexes: Sequence[int]) -> int:
        by_shard: dict[int, list[int]] = {}
        for index in indexes:
            by_shard.setdefault(index % self._count, []).append(index)
        return sum(self._call(self._shards[k], "retry", part) or 0 for k, part in by_shard.items())

    def close(self) -> None:
        """Let every shard close its output (after `shutdown`, they have saved)."""
        if self._closed or self._ray is None:
            return
        self._closed = True
        refs = [shard.actor.close.remote() for shard in self._shards]
        with contextlib.suppress(Exception):
            self._ray.get(refs, timeout=CALL_TIMEOUT_S)
        self._events.flush()

    # ----- for the figures and the tests -------------------------------------------------------------

    def shard_replies(self) -> list[dict[str, Any] | None]:
        """Each shard's last answer (its snapshot, cpu_s, max_rss_kb, host), None before any."""
        return [shard.reply for shard in self._shards]

    def restarts(self) -> list[int]:
        return [shard.restarts for shard in self._shards]

    def shard_actor(self, number: int) -> Any:
        """The Ray actor of shard `number` (a test kills it)."""
        return self._shards[number].actor

    # ----- internals -------------------------------------------------------------------------------

    def _settings(self, number: int) -> Settings:
        share, extra = divmod(self._workers, self._count)
        return Settings(self._version, share + (1 if number < extra else 0), self._paused)

    async def _apply_all(self) -> None:
        self._version += 1
        await asyncio.gather(
            *(self._await(shard, shard.actor.apply.remote(self._settings(k))) for k, shard in enumerate(self._shards))
        )

    async def _each(self, method: str, *args: Any) -> list[Any]:
        calls = [self._await(shard, getattr(shard.actor, method).remote(*args)) for shard in self._shards]
        return list(await asyncio.gather(*calls))

    async def _await(self, shard: _ShardState, ref: Any) -> Any:
        """A shard's answer; None when it does not give one (it died, or is being restarted)."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(_future(ref)), CALL_TIMEOUT_S)
        except Exception:
            if shard.failing_since is None:
                shard.failing_since = time.monotonic()
            return None

    async def _poll_all(self) -> None:
        now = time.monotonic()
        windows = [w for w, at in self._windows.items() if now - at < 2.0]
        self._windows = {w: self._windows[w] for w in windows}

        async def poll(number: int, shard: _ShardState) -> None:
            reply = await self._await(shard, shard.actor.poll.remote(self._settings(number), windows))
            if reply is None:
                return
            if shard.reply is not None and reply.get("started") != shard.reply.get("started"):
                shard.restarts += 1
                self._events.note("open", f"shard {number} came back (its actor was restarted) and resumed")
            shard.failing_since = None
            shard.reply = reply
            shard.rows = reply.get("rows", {})

        await asyncio.gather(*(poll(k, shard) for k, shard in enumerate(self._shards)))

    def _finished(self, shard: _ShardState) -> bool:
        return shard.reply is not None and shard.failing_since is None and shard.reply.get("code") is not None

    def _lost(self, shard: _ShardState) -> bool:
        failing = shard.failing_since is not None and time.monotonic() - shard.failing_since > self._lost_after_s
        return failing or bool(shard.reply and shard.reply.get("error"))

    def _problems(self) -> str | None:
        """The shards that cannot come back, with their progress, in a sentence."""
        said = []
        for number, shard in enumerate(self._shards):
            if shard.reply and shard.reply.get("error"):
                said.append(shard.reply["error"])
            elif self._lost(shard) or shard.failing_since is not None:
                snap = (shard.reply or {}).get("snapshot")
                progress = f"{snap.stats.finished:,} of {snap.stats.total:,} finished" if snap else "no progress seen"
                what = "cannot come back" if self._lost(shard) else "is not answering (being restarted?)"
                said.append(f"shard {number} {what} ({progress}); run the same command again to finish it")
        return "; ".join(said) or None

    def _exit_code(self) -> int:
        codes = [shard.reply.get("code") if shard.reply else None for shard in self._shards]
        return EXIT_DONE if codes and all(code == EXIT_DONE for code in codes) else EXIT_INTERRUPTED

    def _merged_events(self) -> list[RunEvent]:
        events = list(self._events.events())
        for number, shard in enumerate(self._shards):
            snap = (shard.reply or {}).get("snapshot")
            for event in snap.events if snap is not None else ():
                if event.kind not in _DRIVER_KINDS:
                    events.append(dataclasses.replace(event, text=f"shard {number}: {event.text}"))
        return sorted(events, key=lambda event: event.at)

    def _call(self, shard: _ShardState, method: str, *args: Any) -> Any:
        """A blocking call to one shard, for the front end's rare asks (a trajectory, a retry)."""
        try:
            return self._ray.get(getattr(shard.actor, method).remote(*args), timeout=CALL_TIMEOUT_S)
        except Exception:
            return None

    def _call_each(self, method: str, *args: Any) -> list[Any]:
        refs = [getattr(shard.actor, method).remote(*args) for shard in self._shards]
        try:
            return list(self._ray.get(refs, timeout=CALL_TIMEOUT_S))
        except Exception:
            return [[] for _ in self._shards] if method == "rows" else [{} for _ in self._shards]

    def _background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _future(ref: Any) -> Future[Any]:
    return ref.future()  # type: ignore[no-any-return]


def saved_shards(run_dir: Path) -> int | None:
    """The shard count of an earlier run of this directory (None: none, or not a cluster run)."""
    try:
        return shard_count(read_state(run_dir / STATE_FILE), run_dir / STATE_FILE)
    except StoreError:
        return None  # open() says what is wrong with it


def connect(address: str, shards: int | None = None) -> Any:
    """Join (`auto`, an address) or start (`local`, room for `shards` actors) a Ray cluster; the ray module.

    ClusterError when it cannot."""
    ray = import_ray()
    try:
        if address == "local":
            cpus = max(os.cpu_count() or 1, shards or 1)  # Ray's CPUs are a count of actors that fit, not cores
            # address="local": a new cluster of our own, even where another one runs on this machine
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as error:
        raise ClusterError(f"cannot join the Ray cluster at {address}: {error}") from None
    return ray

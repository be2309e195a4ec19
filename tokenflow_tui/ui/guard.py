"""The run's controls as the dashboard calls them: a read that raises is reported, not fatal.

The dashboard calls the run's synchronous reads (snapshot, rows, trajectory…) from timers and key
handlers. In Textual an exception there ends the app, and with it the terminal view of a run that is
still going. Each read here falls back to an answer the screens can draw (the last snapshot, no rows,
no attempts) and hands the error to `report`, once per distinct message. The coroutines (run, pause,
save…) pass through unchanged: the app runs them in workers, whose errors its one handler reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..run.contract import RequestRow, RunControl, RunSnapshot, SaveReport, SearchStatus, SortStatus

T = TypeVar("T")
Report = Callable[[str], None]

log = logging.getLogger("tokenflow.ui")


class GuardedControl:
    """Wraps a `RunControl`; implements it too."""

    def __init__(self, control: RunControl, report: Report) -> None:
        self.inner = control
        self._report = report
        self._last_snapshot: RunSnapshot | None = None
        self._reported: set[str] = set()

    def _guard(self, what: str, call: Callable[[], T], fallback: T) -> T:
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - any bug of the run must leave the dashboard up
            message = f"{what} failed: {type(error).__name__}: {error}"
            if message not in self._reported:
                # the same failure on every refresh would bury every other notification
                self._reported.add(message)
                log.exception("%s", message)
                self._report(message)
            return fallback

    # reads

    def snapshot(self) -> RunSnapshot:
        if self._last_snapshot is None:
            # nothing to fall back on before the first snapshot: this one is let through
            self._last_snapshot = self.inner.snapshot()
            return self._last_snapshot
        self._last_snapshot = self._guard("reading the run's numbers", self.inner.snapshot, self._last_snapshot)
        return self._last_snapshot

    # the sort key is passed only when there is one, so that a control of the input order alone still serves
    def row_count(self, row_filter: str = "all", sort: str = "input") -> int:
        sorted_by = {"sort": sort} if sort != "input" else {}
        return self._guard("counting the requests", lambda: self.inner.row_count(row_filter, **sorted_by), 0)

    def rows(self, row_filter: str, start: int, stop: int, sort: str = "input") -> list[RequestRow]:
        sorted_by = {"sort": sort} if sort != "input" else {}
        return self._guard("reading the requests", lambda: self.inner.rows(row_filter, start, stop, **sorted_by), [])

    def sort_status(self, sort: str) -> SortStatus:
        return self._guard("sorting the requests", lambda: self.inner.sort_status(sort), SortStatus(sort))

    def search(self, query: str) -> SearchStatus:
        return self._guard("searching the requests", lambda: self.inner.search(query), SearchStatus(query))

    def search_status(self) -> SearchStatus:
        return self._guard("searching the requests", self.inner.search_status, SearchStatus())

    def find(self, position: int, direction: int, row_filter: str = "all", sort: str = "input") -> int | None:
        return self._guard(
            "finding the next match", lambda: self.inner.find(position, direction, row_filter, sort), None
        )

    def trajectory(self, index: int) -> list[dict[str, Any]]:
        return self._guard(f"reading request #{index}", lambda: self.inner.trajectory(index), [])

    def failed_groups(self) -> dict[str, list[int]]:
        return self._guard("reading the failed requests", self.inner.failed_groups, {})

    def _refusal(self, what: str, call: Callable[[], str | None]) -> str | None:
        # the refusal is a sentence the app shows anyway: the error becomes one
        try:
            return call()
        except Exception as error:  # noqa: BLE001
            log.exception("%s failed", what)
            return f"{what} failed: {type(error).__name__}: {error}"

    def set_workers(self, n: int) -> str | None:
        return self._refusal("setting the workers", lambda: self.inner.set_workers(n))

    def set_limits(self, requests_per_minute: float, tokens_per_minute: int) -> str | None:
        return self._refusal(
            "setting the rate limits", lambda: self.inner.set_limits(requests_per_minute, tokens_per_minute)
        )

    def set_budget(self, max_total_tokens: int, max_cost_usd: float) -> str | None:
        return self._refusal("setting the budgets", lambda: self.inner.set_budget(max_total_tokens, max_cost_usd))

    def reset_traffic(self) -> str | None:
        return self._refusal("resetting traffic control", self.inner.reset_traffic)

    def retry(self, indexes: Sequence[int]) -> int:
        return self._guard("queueing the requests again", lambda: self.inner.retry(indexes), 0)

    def __getattr__(self, name: str) -> Any:
        # what the dashboard does not call yet passes straight through
        return getattr(self.inner, name)

    # coroutines, run in the app's workers

    async def run(self) -> int:
        return await self.inner.run()

    async def shutdown(self) -> int:
        return await self.inner.shutdown()

    async def pause(self) -> None:
        await self.inner.pause()

    async def resume(self) -> None:
        await self.inner.resume()

    async def stop_now(self) -> None:
        await self.inner.stop_now()

    async def save(self) -> SaveReport:
        return await self.inner.save()

"""Event-loop lag of the dashboard under heavy data (DESIGN §5: p99 ≤ 100 ms at 1,000 workers).

    python -m pytest tests/bench_dashboard_lag.py -m benchmark -s

This variant drives the dashboard with a fake run of a million requests whose numbers change on
every snapshot, next to 1,000 engine-like coroutines, and scrolls the table meanwhile: it measures
what the dashboard costs the loop. A variant with the real runner against the simulator belongs
beside it, with the same measure (`LoopLagMonitor`) and the same figures printed.
"""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from tokenflow_tui.jobs.view import ChartPoint, RunSnapshot
from tokenflow_tui.ui import TokenFlowApp
from tokenflow_tui.ui.lag import LoopLagMonitor

from ui_fakes import ScriptedRun

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WORKERS = 1_000


class MovingRun(ScriptedRun):
    """A million requests finishing at about 2,500/s: every snapshot differs, a new chart point each second."""

    def __init__(self) -> None:
        super().__init__(total=1_000_000, finished=0, in_flight=WORKERS, workers=WORKERS, history_s=0)
        self.started = time.monotonic()

    def snapshot(self) -> RunSnapshot:
        elapsed = time.monotonic() - self.started
        self.finished = min(self.total - self.in_flight, int(elapsed * 2_500))
        self._lists.clear()
        second = int(elapsed)
        while len(self.history) <= second:
            t = len(self.history)
            errors = {"http_429": 40} if t % 7 == 0 else {"timeout": 1}
            self.history.append(ChartPoint(t=t, finished=2_500, tokens=412_500, errors=errors))
        del self.history[:-300]
        return super().snapshot()


async def engine_like_load(stop: asyncio.Event) -> None:
    """WORKERS coroutines that each wake every few milliseconds and spend a little CPU, like workers
    handling answers."""

    async def worker(n: int) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.2 + (n % 10) / 100)
            sum(range(200))

    await asyncio.gather(*(worker(n) for n in range(WORKERS)))


@pytest.mark.benchmark
async def test_dashboard_loop_lag_with_a_heavy_fake_run() -> None:
    run = MovingRun()
    monitor = LoopLagMonitor(interval_s=0.05, window_s=SECONDS + 60)
    app = TokenFlowApp(run, lag_probe=monitor)
    async with app.run_test(size=(200, 60)) as pilot:
        stop = asyncio.Event()
        load = asyncio.create_task(engine_like_load(stop))
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            await pilot.press("pagedown")  # scrolling a million rows meanwhile
            await asyncio.sleep(0.1)
        stop.set()
        await load
        p99 = monitor.p99_ms()
        # what one pull costs, apart from painting, which the timers did all along
        refresh_ms = []
        for _ in range(50):
            started = time.perf_counter()
            app.main_screen.refresh_data()
            refresh_ms.append((time.perf_counter() - started) * 1000)
    refresh_ms.sort()
    print(f"\nloop lag p99 {p99:.1f} ms over {SECONDS:.0f} s with {WORKERS} coroutines; "
          f"refresh_data median {refresh_ms[25]:.2f} ms, max {refresh_ms[-1]:.2f} ms; "
          f"rows fetched {sum(b - a for _, a, b in run.rows_asked):,}")
    assert p99 is not None and p99 <= 100

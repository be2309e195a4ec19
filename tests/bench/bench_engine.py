"""Engine overhead: 1M no-op requests through 64 workers, beside a bare asyncio worker pool.

Run: python -m pytest -m benchmark -s tests/bench/bench_engine.py
Each measurement runs in a fresh interpreter (tokenflow_tui.bench.engine, as `tokenflow bench` does),
so peak RSS belongs to it alone. ROUNDS rounds, bare and engine in turns; medians.
"""

from __future__ import annotations

import statistics

import pytest

from tokenflow_tui.bench.engine import measure

pytestmark = pytest.mark.benchmark

ROUNDS = 3


@pytest.mark.timeout(1800)
def test_engine_overhead_against_a_bare_pool():
    bare, engine = [], []
    for _ in range(ROUNDS):
        bare.append(measure("bare", 1_000_000, 64))
        engine.append(measure("engine", 1_000_000, 64))
    small = measure("engine", 100_000, 64)
    bare_rate = statistics.median(f.requests_per_s for f in bare)
    engine_rate = statistics.median(f.requests_per_s for f in engine)
    engine_rss = statistics.median(f.peak_rss_mb for f in engine)
    print()
    print(f"bare asyncio pool : {bare_rate:>10,.0f} requests/s  (rounds: {[round(f.requests_per_s) for f in bare]})")
    print(
        f"TokenFlowTask     : {engine_rate:>10,.0f} requests/s  ({engine_rate / bare_rate:.0%} of bare; "
        f"rounds: {[round(f.requests_per_s) for f in engine]})"
    )
    print(f"peak RSS, streaming: {small.peak_rss_mb:.1f} MB at 100k requests, {engine_rss:.1f} MB at 1M")
    assert engine_rate >= 250_000
    assert engine_rss < small.peak_rss_mb + 10

"""Garbage-collector settings for a long run, shared by the command line and the benchmarks."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# A run keeps many long-lived objects (queues, trajectories in flight, the dashboard's widgets):
# full collections over them stall the event loop for 100+ ms at 1,000 workers. Young objects
# are still collected, only less often; cycles among them are rare on the hot path.
RUN_THRESHOLDS = (50_000, 50, 100)


def tune_gc_for_run() -> None:
    """Freeze what start-up made and collect young objects less often."""
    gc.freeze()
    gc.set_threshold(*RUN_THRESHOLDS)


@contextmanager
def gc_tuned_for_run() -> Iterator[None]:
    """`tune_gc_for_run` for a block, then the collector as it was (for runs inside a test process)."""
    thresholds = gc.get_threshold()
    tune_gc_for_run()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)

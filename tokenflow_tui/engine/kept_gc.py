"""Keeping a task's finished requests out of the garbage collector's full collections.

A task without a sink keeps every finished request (four tracked objects each) until `wait_for_done()`.
Each full collection walks all of them again, and one runs each time the old objects grow by a
quarter: at 300,000 kept requests that was a third of the task's time. While such a task runs, what
survives a full collection is frozen (`gc.freeze()`, which costs nothing): it was found alive, so no
garbage is frozen, and the next full collection walks only what came since. When the last keeping
task stops, the frozen objects go back to the oldest generation, unless something else had frozen
objects before (the command line freezes what start-up made): then they stay frozen.
"""

from __future__ import annotations

import gc
from typing import Any

_keepers = 0  # keeping tasks running now
_unfreeze_at_end = False


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def keeping_started() -> None:
    """A task that keeps its finished requests starts running."""
    global _keepers, _unfreeze_at_end
    if _keepers == 0:
        _unfreeze_at_end = gc.get_freeze_count() == 0
        gc.callbacks.append(_freeze_survivors)
    _keepers += 1


def keeping_stopped() -> None:
    """A task counted by `keeping_started` stops (paused, stopped or done)."""
    global _keepers
    _keepers -= 1
    if _keepers == 0:
        gc.callbacks.remove(_freeze_survivors)
        if _unfreeze_at_end:
            gc.unfreeze()

"""Moving a run's earlier progress aside (`run --restart`): nothing is deleted, only moved into a folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import StoreError, os_reason
from .files import fsync_directory
from .results_file import RESULTS_FILE
from .state_file import STATE_FILE

PROGRESS_FILES = (RESULTS_FILE, STATE_FILE, "results.damaged.jsonl")


def earlier_progress(output: Path) -> list[Path]:
    """The files of earlier runs in `output` that a restart moves aside."""
    return [output / name for name in PROGRESS_FILES if (output / name).exists()]


def set_aside(output: Path) -> Path:
    """Move the earlier progress into `output/previous-<time>/` (the caller holds the output's lock); that folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = output / f"previous-{stamp}"
    for number in range(2, 1000):
        if not backup.exists():
            break
        backup = output / f"previous-{stamp}-{number}"
    try:
        backup.mkdir()
        for path in earlier_progress(output):
            os.rename(path, backup / path.name)  # the same file system: nothing is copied, nothing half-moved
        fsync_directory(output)
    except OSError as error:
        raise StoreError(f"cannot move the earlier progress into {backup} ({os_reason(error)}).") from None
    return backup

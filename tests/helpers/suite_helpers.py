"""Helpers of the reliability suites: a simulator in a thread of the test process, and results figures."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenflow_tui.sim import Simulator, SimulatorConfig, SimulatorStats

CHAT_PATH = "/v1/chat/completions"


class ThreadedSimulator:
    """A simulator on its own event loop in a thread, so a test can read its counters while child
    processes run jobs against it (`with ThreadedSimulator(config) as sim: … sim.base_url …`)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._simulator = Simulator(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return self._simulator.base_url

    @property
    def stats(self) -> SimulatorStats:
        return self._simulator.stats

    def requests(self) -> int:
        """Completion requests received so far."""
        return self._simulator.stats.paths[CHAT_PATH]

    def __enter__(self) -> ThreadedSimulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._simulator.start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._simulator.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass(frozen=True)
class FileFigures:
    """What results.jsonl holds, for the suites' figures."""

    lines: int
    invalid_lines: int  # not a whole JSON record (a torn last line is counted here)
    torn_tail: bool  # the last line has no newline yet
    indexes: Counter[int]  # records per input index
    done: Counter[int]  # done records per input index
    attempts: int

    @property
    def duplicated(self) -> int:
        """Indexes with more than one done record (a resumed run must never write a second)."""
        return sum(1 for count in self.done.values() if count > 1)

    def lost(self, total: int) -> int:
        """Input indexes with no record at all."""
        return sum(1 for index in range(total) if index not in self.indexes)


def file_figures(path: Path) -> FileFigures:
    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # after the last newline: empty when the file ends with a whole line
    invalid = 1 if torn else 0
    indexes: Counter[int] = Counter()
    done: Counter[int] = Counter()
    attempts = 0
    for line in lines:
        try:
            record: dict[str, Any] = json.loads(line)
            index = record["index"]
        except (ValueError, KeyError, TypeError):
            invalid += 1
            continue
        indexes[index] += 1
        if record["status"] == "done":
            done[index] += 1
        attempts += len(record["attempts"])
    return FileFigures(len(lines) + torn, invalid, torn, indexes, done, attempts)

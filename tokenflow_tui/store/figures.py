"""What the records of results.jsonl add up to: attempts, requests retried, latency distribution.

One fold for `tokenflow report` (over the whole file) and the dashboard (record by record as they are
written, saved in state.toml, and corrected on reopen from the records written after that save), so
both show the same figures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import orjson

from ..engine.stats import LatencyHistogram
from .rule_figures import RuleFigures

_READ_BYTES = 1 << 20


class RecordFigures:
    """Sums over records; `retried` counts requests whose last record has two attempts or more;
    `rules` what each check and retry rule caught and rescued."""

    __slots__ = ("attempts", "endpoints", "last_offset", "latency", "records", "retried", "rules")

    def __init__(self) -> None:
        self.records = 0
        self.attempts = 0
        self.retried = 0
        self.latency = LatencyHistogram()
        self.rules = RuleFigures()
        # with [[endpoints]]: name → [attempts, failed attempts, requests done by their final attempt there]
        self.endpoints: dict[str, list[int]] = {}
        self.last_offset = -1  # where the last record folded begins in results.jsonl (-1: none yet)

    def add(self, record: dict[str, Any], offset: int, final: bool = True) -> None:
        """Fold the record written at `offset`; `final` when it is its request's last record."""
        attempts = record.get("attempts") or ()
        self.records += 1
        self.attempts += len(attempts)
        if final and len(attempts) >= 2:
            self.retried += 1
        add = self.latency.add
        for attempt in attempts:
            latency_ms = attempt.get("latency_ms")
            if latency_ms is not None:
                add(latency_ms / 1000)
            if "endpoint" in attempt:
                self._add_endpoint(attempt)
        if attempts and "endpoint" in attempts[-1] and record.get("status") == "done":
            self.endpoints[attempts[-1]["endpoint"]][2] += 1
        if len(attempts) >= 2 or record.get("status") != "done":  # a first answer that passed caught nothing
            self.rules.add(record)
        self.last_offset = max(self.last_offset, offset)

    def _add_endpoint(self, attempt: dict[str, Any]) -> None:
        counts = self.endpoints.get(attempt["endpoint"])
        if counts is None:
            counts = self.endpoints[attempt["endpoint"]] = [0, 0, 0]
        counts[0] += 1
        if "error" in attempt:
            counts[1] += 1

    def superseded(self, attempts: int) -> None:
        """A request's earlier record, of `attempts` attempts, is no longer its last one."""
        if attempts >= 2:
            self.retried -= 1

    def to_data(self) -> dict[str, Any]:
        """Plain data for state.toml."""
        return {
            "records": self.records,
            "attempts": self.attempts,
            "retried": self.retried,
            "last_offset": self.last_offset,
            "latency": self.latency.to_data(),
            "rules": self.rules.to_data(),
            "endpoints": {name: list(counts) for name, counts in self.endpoints.items()},
        }

    @classmethod
    def from_data(cls, data: Any) -> RecordFigures | None:
        """The figures `to_data` gave, or None when `data` is not such figures (an older state)."""
        if not isinstance(data, dict) or not all(type(data.get(k)) is int for k in ("records", "attempts", "retried")):
            return None
        figures = cls()
        figures.records, figures.attempts, figures.retried = data["records"], data["attempts"], data["retried"]
        figures.last_offset = int(data.get("last_offset", -1))
        figures.latency = LatencyHistogram.from_data(data.get("latency"))
        figures.rules = RuleFigures.from_data(data.get("rules"))
        endpoints = data.get("endpoints")
        if isinstance(endpoints, dict):
            figures.endpoints = {
                str(name): [int(n) for n in counts[:3]]
                for name, counts in endpoints.items()
                if isinstance(counts, list) and len(counts) >= 3
            }
        return figures


def fold_records(
    figures: RecordFigures,
    path: str | os.PathLike[str],
    end: int,
    is_final: Callable[[int, int], bool],
    also: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Fold the records of `path` after `figures.last_offset` (all of them at -1) up to byte `end`.

    `is_final(index, offset)` tells whether the record at `offset` is the last one of input request `index`;
    `also(record)` sees each record folded.
    """
    start = 0 if figures.last_offset < 0 else figures.last_offset
    skip_first = figures.last_offset >= 0  # that record is in the figures already
    with open(path, "rb") as file:
        file.seek(start)
        offset = start
        rest = b""
        while offset < end:
            block = file.read(min(_READ_BYTES, end - offset - len(rest)))
            if not block:
                break
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if skip_first:
                    skip_first = False
                elif line:
                    record = orjson.loads(line)
                    figures.add(record, offset, is_final(record["index"], offset))
                    if also is not None:
                        also(record)
                offset += len(line) + 1

"""events.jsonl: what happened to a run (pauses and their reasons, changes, saves, holds), one JSON object a line.

Appended only; a line that is not JSON (a torn write) is skipped when read. Not a source of truth:
results.jsonl and state.toml are.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from .errors import StoreError, os_reason

EVENTS_FILE = "events.jsonl"


def append_events(path: str | os.PathLike[str], events: list[dict[str, Any]]) -> None:
    """Append `events` as lines (no fsync: a lost event costs nothing); StoreError when it cannot."""
    if not events:
        return
    data = b"".join(orjson.dumps(event) + b"\n" for event in events)
    try:
        with open(path, "ab") as file:
            file.write(data)
    except OSError as e:
        raise StoreError(f"{path}: cannot append events ({os_reason(e)}).") from None


def read_events(path: str | os.PathLike[str], last: int) -> list[dict[str, Any]]:
    """The last `last` events of the file (none when there is no file or it cannot be read)."""
    try:
        with Path(path).open("rb") as file:
            lines = deque(file, maxlen=last)
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events

"""The run's event log: holds, pauses and their reasons, limit, budget and worker changes, saves, resumes.

The dashboard shows it in its event pane; the same events go to events.jsonl in the output directory,
and a reopened run shows the earlier ones. Repeated changes of one thing coalesce into one event
(`workers: 11 → 21`, not five), until the event has been written.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from ..store.errors import StoreError
from ..store.events_file import EVENTS_FILE, append_events, read_events
from .contract import RunEvent

KEEP = 500  # events held for the pane; the file keeps all of them
COALESCE_S = 10.0  # a change this soon after the same kind of change updates that event


class EventLog:
    """Events, oldest first; `flush` appends those not yet written to events.jsonl."""

    def __init__(self, output_dir: Path, time: Callable[[], float], secrets: Iterable[str] = ()) -> None:
        self._path = output_dir / EVENTS_FILE
        self._time = time
        self._secrets = [s for s in secrets if s]
        self._events: deque[RunEvent] = deque(maxlen=KEEP)
        self._unwritten: list[RunEvent] = []
        self._first_old: str | None = None  # the value before the first of the coalesced changes

    def load(self) -> None:
        """Take the events earlier runs of this output wrote."""
        for data in read_events(self._path, KEEP):
            at, kind, text = data.get("at"), data.get("kind"), data.get("text")
            if isinstance(at, (int, float)) and isinstance(kind, str) and isinstance(text, str):
                self._events.append(RunEvent(float(at), kind, text, earlier=True))

    def note(self, kind: str, text: str) -> None:
        self._add(RunEvent(self._time(), kind, self._redact(text)))
        self._first_old = None

    def note_change(self, kind: str, label: str, old: str, new: str) -> None:
        """`label: old → new`; soon after an unwritten change of the same kind, that one is updated."""
        now = self._time()
        last = self._unwritten[-1] if self._unwritten else None
        if last is not None and last.kind == kind and now - last.at <= COALESCE_S and self._first_old is not None:
            old = self._first_old
            self._unwritten.pop()
            self._events.pop()
        else:
            self._first_old = old
        self._add(RunEvent(now, kind, f"{label}: {old} → {new}"))

    def events(self) -> tuple[RunEvent, ...]:
        return tuple(self._events)

    def flush(self) -> None:
        """Append the unwritten events to events.jsonl; they are kept for the next flush when it cannot."""
        if not self._unwritten:
            return
        try:
            append_events(self._path, [{"at": e.at, "kind": e.kind, "text": e.text} for e in self._unwritten])
        except StoreError:
            return  # results matter, events do not: the next save tries again
        self._unwritten.clear()
        self._first_old = None

    def _add(self, event: RunEvent) -> None:
        self._events.append(event)
        self._unwritten.append(event)

    def _redact(self, text: str) -> str:
        """A server may quote the key it refused: no secret reaches the file or the screen."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

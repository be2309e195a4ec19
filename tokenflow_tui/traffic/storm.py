"""The storm detector: when most recent requests fail in a way retrying cannot fix, pause the job.

A wrong model name, a malformed parameter or a broken custom handler fails every request the same
way; burning the whole input on it helps nobody.
"""

from __future__ import annotations

from collections import Counter, deque

WINDOW = 50  # the last this many finished requests are judged …
MIN_SEEN = 20  # … once at least this many have finished
SHARE = 0.5  # more than this share failing non-retryably is a storm


class StormDetector:
    def __init__(self) -> None:
        self._recent: deque[str | None] = deque(maxlen=WINDOW)  # the error kind of a failure, else None
        self._failures = 0
        self.enabled = True

    def finished(self, failure: str | None) -> str | None:
        """A request finished (`failure`: the kind of error retrying cannot fix, or None); why to pause, if so."""
        recent = self._recent
        if len(recent) == WINDOW and recent[0] is not None:
            self._failures -= 1
        recent.append(failure)
        if failure is not None:
            self._failures += 1
        if not self.enabled or len(recent) < MIN_SEEN or self._failures <= SHARE * len(recent):
            return None
        kinds = Counter(kind for kind in recent if kind is not None)
        kind, count = kinds.most_common(1)[0]
        return (
            f"{self._failures} of the last {len(recent)} requests failed with errors that retrying cannot fix "
            f"(mostly {kind}, {count} times); check the job and the failed requests, then resume to go on anyway"
        )

    def forgive(self) -> None:
        """The user resumed after a storm: they chose to go on, so the detector stays quiet from now on."""
        self.enabled = False
        self._recent.clear()
        self._failures = 0

"""The storm detector: when most recent requests fail in a way retrying cannot fix, pause the job.

A wrong model name, a malformed parameter, a broken custom handler or a check no answer passes
([checks]: every attempt of the request failed it) fails every request the same way; burning the
whole input on it helps nobody. A retry round (`run --retry-failed`, `r` in the
dashboard) of requests that failed before is different: the same failure again is not news, so the
failures it is told to expect do not count.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from ..engine.error_kinds import CHECK_FAILED

WINDOW = 50  # the last this many finished requests are judged …
MIN_SEEN = 20  # … once at least this many have finished
SHARE = 0.5  # more than this share failing non-retryably is a storm


def failure_label(kind: object, status: object) -> str:
    """How a failure is named here and in the pause's sentence: "HTTP 400", or its kind."""
    # an answer that failed a check came with a good status: the check is what failed
    return f"HTTP {status}" if status and kind != CHECK_FAILED else str(kind)


class StormDetector:
    def __init__(self) -> None:
        self._recent: deque[str | None] = deque(maxlen=WINDOW)  # the error kind of a failure, else None
        self._failures = 0
        self._expected: Counter[str] = Counter()  # failures of requests queued again, by label
        self.enabled = True

    def expect(self, labels: Iterable[str]) -> None:
        """Requests that failed so (failure_label) are queued again: as many failures of each are not news."""
        self._expected.update(labels)

    def finished(self, failure: str | None) -> str | None:
        """A request finished (`failure`: the kind of error retrying cannot fix, or None); why to pause, if so."""
        if failure is not None and self._expected[failure] > 0:
            self._expected[failure] -= 1
            failure = None  # it failed so before: a retry round's repeat, not a storm
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

"""The x-ratelimit-* headers of OpenAI-style APIs: how much of the allowance is left and when it comes back.

x-ratelimit-limit-requests: 500          x-ratelimit-limit-tokens: 30000
x-ratelimit-remaining-requests: 499      x-ratelimit-remaining-tokens: 29950
x-ratelimit-reset-requests: 120ms        x-ratelimit-reset-tokens: 6m0s
A reset is the time until the allowance is whole again, written as a Go duration or in seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?")


@dataclass(frozen=True, slots=True)
class Allowance:
    """One kind of allowance (requests or tokens) as the last response reported it."""

    limit: int | None
    remaining: int
    reset_s: float | None

    def wait_s(self, needed: float) -> float | None:
        """How long until `needed` units are back, when fewer remain; None when enough remain.

        The reset is the time until the whole allowance is back; with the limit known, the
        allowance is taken to come back evenly over it (a token bucket, as providers document).
        """
        if self.remaining >= needed or self.reset_s is None:
            return None
        if self.limit:
            return self.reset_s * min(1.0, (needed - self.remaining) / self.limit)
        return self.reset_s


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    requests: Allowance | None
    tokens: Allowance | None


def read_ratelimit_headers(headers: Mapping[str, str]) -> RateLimitHeaders | None:
    """The allowances the headers report, or None when there are none (most servers send none)."""
    requests = _allowance(headers, "requests")
    tokens = _allowance(headers, "tokens")
    if requests is None and tokens is None:
        return None
    return RateLimitHeaders(requests, tokens)


def parse_duration(text: str) -> float | None:
    """Seconds in "1.5", "20ms", "6m0s", "1h2m3.5s"; None when unreadable or negative."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        if match is None or not text:
            return None
        hours, minutes, secs, millis = (float(part) if part else 0.0 for part in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs + millis / 1000
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _allowance(headers: Mapping[str, str], kind: str) -> Allowance | None:
    remaining = _whole(headers.get(f"x-ratelimit-remaining-{kind}"))
    if remaining is None:
        return None
    reset = headers.get(f"x-ratelimit-reset-{kind}")
    return Allowance(
        limit=_whole(headers.get(f"x-ratelimit-limit-{kind}")),
        remaining=remaining,
        reset_s=parse_duration(reset) if reset is not None else None,
    )


def _whole(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None

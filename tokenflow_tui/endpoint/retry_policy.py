"""Which failed attempts are retried, and how long to wait before the next one (DESIGN §6).

Pure functions: randomness comes from an injected RNG and the time from the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Protocol

from ..engine.error_kinds import (
    BAD_RESPONSE,
    CHECK_FAILED,
    CONNECTION,
    CUT_OFF,
    HTTP_4XX,
    HTTP_5XX,
    HTTP_429,
    TIMEOUT,
)

MAX_RETRY_AFTER_S = 300.0

# kinds that are worth another attempt whatever the status; "http_4xx" only for the statuses below
# check_failed: another answer (sampled again, or changed by a rule) may pass
_RETRYABLE_KINDS = frozenset({HTTP_429, HTTP_5XX, TIMEOUT, CONNECTION, BAD_RESPONSE, CUT_OFF, CHECK_FAILED})
_RETRYABLE_4XX = frozenset({408, 409})


class Rng(Protocol):
    def random(self) -> float: ...


def is_retryable(kind: str, status_code: int | None) -> bool:
    """Whether an attempt that failed with this error kind (and HTTP status, if any) is worth retrying."""
    if kind in _RETRYABLE_KINDS:
        return True
    return kind == HTTP_4XX and status_code in _RETRYABLE_4XX


def backoff_s(attempt: int, base_s: float, max_s: float, rng: Rng) -> float:
    """The wait after failed attempt number `attempt` (from 1), full jitter: uniform in [0, cap].

    cap = min(max_s, base_s · 2^(attempt-1)).
    """
    # the exponent is bounded so a huge attempt number cannot overflow the float
    cap = min(max_s, base_s * 2.0 ** min(attempt - 1, 64))
    return rng.random() * max(cap, 0.0)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks to wait, from `retry-after-ms` or `Retry-After` (seconds or HTTP date).

    `headers` is case-insensitive (httpx.Headers) or has lower-case keys; `now` is wall-clock
    seconds since the epoch, for a date. Values are clamped to [0, 300]; negative or unreadable
    values are ignored, and None means no usable header.
    """
    millis = _non_negative_number(headers.get("retry-after-ms"))
    if millis is not None:
        return min(millis / 1000.0, MAX_RETRY_AFTER_S)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative_number(value)
    if seconds is None:
        seconds = _seconds_until_date(value, now)
    if seconds is None:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def retry_delay_s(attempt: int, retry_after_s: float | None, base_s: float, max_s: float, rng: Rng) -> float:
    """The wait before the next attempt: the jittered backoff, but never less than the server asked for."""
    delay = backoff_s(attempt, base_s, max_s, rng)
    if retry_after_s is not None and retry_after_s > delay:
        return retry_after_s
    return delay


def _non_negative_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    # "inf" and "nan" parse as floats but mean nothing as a delay
    if not math.isfinite(number) or number < 0:
        return None
    return number


def _seconds_until_date(value: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        # "-0000" gives a naive datetime, but an HTTP date is always UTC
        when = when.replace(tzinfo=UTC)
    # a date already past means "now"
    return max(when.timestamp() - now, 0.0)

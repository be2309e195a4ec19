"""The retry policy: which failures retry, full-jitter backoff, Retry-After parsing (DESIGN §6)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from tokenflow_tui.endpoint.retry_policy import backoff_s, is_retryable, parse_retry_after, retry_delay_s

NOW = 1_700_000_000.0


class FixedRng:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("connection", None, True),
        ("timeout", None, True),
        ("bad_response", 200, True),
        ("bad_response", None, True),
        ("http_429", 429, True),
        ("http_5xx", 500, True),
        ("http_5xx", 503, True),
        ("http_4xx", 408, True),
        ("http_4xx", 409, True),
        ("http_4xx", 400, False),
        ("http_4xx", 401, False),
        ("http_4xx", 403, False),
        ("http_4xx", 404, False),
        ("http_4xx", 422, False),
        ("handler_exception", None, False),
    ],
)
def test_which_failures_retry(kind, status, expected):
    assert is_retryable(kind, status) is expected


@pytest.mark.parametrize(
    ("attempt", "rng_value", "expected"),
    [
        (1, 1.0, 0.5),  # cap = base
        (2, 1.0, 1.0),  # doubles
        (3, 0.5, 1.0),
        (4, 1.0, 4.0),
        (5, 1.0, 5.0),  # capped at max_s
        (10_000, 1.0, 5.0),  # no overflow on a huge attempt number
        (3, 0.0, 0.0),  # full jitter reaches zero
    ],
)
def test_backoff_is_full_jitter_under_an_exponential_cap(attempt, rng_value, expected):
    assert backoff_s(attempt, 0.5, 5.0, FixedRng(rng_value)) == pytest.approx(expected)


def test_backoff_spreads_over_the_whole_range():
    rng = random.Random(7)
    values = [backoff_s(3, 1.0, 60.0, rng) for _ in range(2000)]
    assert min(values) >= 0.0 and max(values) <= 4.0
    assert min(values) < 0.1 and max(values) > 3.9  # jitter over [0, cap], not a fixed delay


def _http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + seconds_from_now, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250.5"}, 0.2505),
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": " 2.5 "}, 2.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": _http_date(12)}, 12.0),
        ({"Retry-After": _http_date(-30)}, 0.0),  # a date already past: retry now
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}, 0.0),
        ({"Retry-After": "86400"}, 300.0),  # absurd: clamped
        ({"retry-after-ms": "99999999"}, 300.0),
        ({"Retry-After": _http_date(10_000)}, 300.0),
        ({"Retry-After": "-5"}, None),  # negative: ignored
        ({"Retry-After": "soon"}, None),  # garbage: ignored
        ({"Retry-After": ""}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "Wed, 99 Oct 2015 07:28:00 GMT"}, None),
        ({"retry-after-ms": "abc", "Retry-After": "3"}, 3.0),  # garbage ms falls back to Retry-After
        ({"retry-after-ms": "-1", "Retry-After": "3"}, 3.0),
        ({"retry-after-ms": "500", "Retry-After": "3"}, 0.5),  # the precise one wins
    ],
)
def test_parse_retry_after(headers, expected):
    result = parse_retry_after(httpx.Headers(headers), NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_retry_delay_is_at_least_what_the_server_asked_for():
    assert retry_delay_s(1, 3.0, 1.0, 60.0, FixedRng(1.0)) == 3.0  # backoff 1.0 < 3.0
    assert retry_delay_s(4, 3.0, 1.0, 60.0, FixedRng(1.0)) == 8.0  # backoff 8.0 > 3.0
    assert retry_delay_s(4, None, 1.0, 60.0, FixedRng(0.25)) == 2.0
    assert retry_delay_s(1, 0.0, 1.0, 60.0, FixedRng(0.5)) == 0.5

"""The latency histogram against exact nearest-rank percentiles of known samples."""

from __future__ import annotations

import math
import random

import pytest

from tokenflow_tui.engine.stats import LatencyHistogram


def exact(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@pytest.mark.parametrize(
    "samples",
    [
        [0.050 + i * 1e-4 for i in range(1000)],  # a handler that sleeps 50 ms and a bit
        [random.Random(7).lognormvariate(math.log(0.2), 0.6) for _ in range(20_000)],
        [random.Random(8).uniform(0.0005, 30.0) for _ in range(5_000)],
        [0.149] * 99 + [0.401],
    ],
    ids=["from-50ms", "lognormal", "uniform", "one-slow"],
)
def test_percentiles_are_within_one_percent_of_the_exact_ones(samples):
    hist = LatencyHistogram()
    hist.add_all(samples)
    points = (1, 50, 90, 95, 99, 99.9, 100)
    for p, got in zip(points, hist.percentiles(points)):
        assert got is not None
        assert abs(got - exact(samples, p)) <= 0.01 * exact(samples, p), p
        assert hist.percentile(p) == got


def test_a_handler_that_sleeps_at_least_50ms_never_shows_less():
    hist = LatencyHistogram()
    hist.add_all([0.0501] * 10)
    assert hist.percentile(50) >= 0.050


def test_p95_and_p99_are_told_apart():
    samples = [0.250] * 900 + [0.389] * 60 + [0.401] * 40
    hist = LatencyHistogram()
    hist.add_all(samples)
    p50, p95, p99 = hist.percentiles((50, 95, 99))
    assert p50 == pytest.approx(0.250, rel=0.01)
    assert p95 == pytest.approx(0.389, rel=0.01)
    assert p99 == pytest.approx(0.401, rel=0.01)
    assert p95 < p99


def test_merge_and_data_round_trip_keep_every_sample():
    first, second = LatencyHistogram(), LatencyHistogram()
    first.add_all([0.01, 0.02, 0.03])
    second.add_all([1.0, 2.0])
    first.merge(second)
    again = LatencyHistogram.from_data(first.to_data())
    assert (again.count, again.percentiles((0, 100))) == (5, first.percentiles((0, 100)))
    assert again.percentile(100) == pytest.approx(2.0, rel=0.01)


def test_data_of_another_layout_is_not_read_as_this_one():
    assert LatencyHistogram.from_data({"3": 4}).count == 0
    assert LatencyHistogram.from_data({"format": "log-1.09", "buckets": [3], "counts": [4]}).count == 0


def test_no_samples_no_percentiles():
    assert LatencyHistogram().percentiles((50, 99)) == (None, None)


@pytest.mark.parametrize(
    "samples",
    [
        [random.Random(9).uniform(2e-4, 3e-4) for _ in range(5_000)],  # few buckets: counted a bucket at a time
        [random.Random(10).lognormvariate(-3, 2) for _ in range(5_000)],  # many buckets: sample by sample
        # on the edges of buckets, below the least bucket and beyond the last one
        [1e-6 * 1.01**k for k in range(0, 2000, 7)] * 5 + [0.0, -1.0, 1e-7, 1e-6, 1e6, 2e6] * 300,
    ],
    ids=["narrow", "spread", "edges"],
)
def test_samples_added_in_batches_land_in_the_bucket_each_would_alone(samples):
    # the histogram folds its samples in batches (sorted, for few buckets); each must still land in the
    # bucket its own logarithm gives
    hist = LatencyHistogram()
    hist.add_all(samples)
    data = hist.to_data()
    expected: dict[int, int] = {}
    for seconds in samples:
        index = LatencyHistogram._index(seconds)
        expected[index] = expected.get(index, 0) + 1
    assert dict(zip(data["buckets"], data["counts"])) == expected
    assert (hist.count, data["min_s"], data["max_s"]) == (len(samples), min(samples), max(samples))

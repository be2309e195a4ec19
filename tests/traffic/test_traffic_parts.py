"""The pieces of traffic control, each alone, on plain numbers and injected time."""

from __future__ import annotations

import random

import pytest

from tokenflow_tui.traffic.adaptive import AdaptiveConcurrency
from tokenflow_tui.traffic.bucket import TokenBucket
from tokenflow_tui.traffic.budget import Budget, Prices
from tokenflow_tui.traffic.congestion import Congestion
from tokenflow_tui.traffic.estimate import estimate_tokens, usage_tokens
from tokenflow_tui.traffic.pace import Pace
from tokenflow_tui.traffic.ratelimit_headers import Allowance, parse_duration, read_ratelimit_headers
from tokenflow_tui.traffic.slowdown import MAX_HOLD_S, Slowdown
from tokenflow_tui.traffic.storm import StormDetector


class FixedRng:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


# ----- the token bucket --------------------------------------------------------------------------


def test_a_bucket_paces_evenly_after_a_tenth_of_a_seconds_worth():
    bucket = TokenBucket(6000, now=0.0)  # 100 a second, 10 at once
    assert [bucket.reserve(1, 0.0) for _ in range(10)] == [0.0] * 10
    waits = [bucket.reserve(1, 0.0) for _ in range(3)]
    assert waits == pytest.approx([0.01, 0.02, 0.03])
    assert bucket.level(0.03) == pytest.approx(0.0)


def test_a_bucket_never_holds_more_than_a_tenth_of_a_second_and_at_least_one_request():
    bucket = TokenBucket(6000, now=0.0)
    bucket.reserve(10, 0.0)
    assert bucket.level(100.0) == pytest.approx(10.0)
    slow = TokenBucket(6, now=0.0)  # one every 10 s
    assert slow.reserve(1, 0.0) == 0.0
    assert slow.reserve(1, 0.0) == pytest.approx(10.0)


def test_a_request_larger_than_the_bucket_waits_for_its_debt_and_is_not_starved():
    bucket = TokenBucket(60_000, now=0.0)  # 1,000 tokens a second, 100 at once
    assert bucket.reserve(3000, 0.0) == pytest.approx(2.9)
    assert bucket.reserve(10, 0.0) == pytest.approx(2.91)  # small ones line up behind it


def test_adjust_corrects_an_estimate_and_a_new_rate_keeps_the_level():
    bucket = TokenBucket(60_000, now=0.0)
    bucket.reserve(100, 0.0)
    bucket.adjust(-40, 0.0)  # the request used 60 tokens, not 100
    assert bucket.level(0.0) == pytest.approx(40.0)
    bucket.adjust(-5000, 0.0)  # a refund never fills it beyond its capacity
    assert bucket.level(0.0) == pytest.approx(100.0)
    bucket.set_rate(6000, 0.0)  # 100 a second: the level shrinks to the new capacity
    assert bucket.level(0.0) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="the rate must be above 0, got 0"):
        bucket.set_rate(0, 0.0)


# ----- token estimates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "request_params", "expected"),
    [
        ({"prompt": "a" * 40}, {"max_tokens": 100}, 110),
        ({"prompt": "a" * 41}, {}, 11),
        ({"prompt": "abc", "params": {"max_tokens": 7}}, {"max_tokens": 100}, 8),
        ({"messages": [{"role": "user", "content": "x" * 8}, {"role": "assistant", "content": "y" * 4}]}, {}, 3),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "z" * 8}, {"type": "image_url"}]}]},
            {"max_completion_tokens": 5},
            7,
        ),
        ({"question": "what", "max_tokens": 9}, {}, 9),  # a custom handler's params
        ("not a dict", {"max_tokens": 100}, 0),
    ],
)
def test_the_token_estimate_is_prompt_characters_over_four_plus_the_completion_cap(line, request_params, expected):
    assert estimate_tokens(line, request_params) == expected


def test_usage_tokens_takes_the_total_or_adds_the_parts():
    assert usage_tokens({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9}) == 9
    assert usage_tokens({"prompt_tokens": 3, "completion_tokens": 4}) == 7
    assert usage_tokens({"prompt_tokens": 3}) == 3
    assert usage_tokens({}) is None
    assert usage_tokens(None) is None


# ----- x-ratelimit headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.25", 0.25),
        ("7", 7.0),
        ("2m", 120.0),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("inf", None),
        ("5x", None),
    ],
)
def test_reset_durations_are_read_as_go_durations_or_seconds(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_ratelimit_headers_are_read_per_kind_and_absent_ones_give_none():
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-remaining-tokens": "2000",
    }
    limits = read_ratelimit_headers(headers)
    assert limits is not None
    assert limits.requests == Allowance(limit=500, remaining=0, reset_s=pytest.approx(0.12))
    assert limits.tokens == Allowance(limit=None, remaining=2000, reset_s=None)
    assert read_ratelimit_headers({"content-type": "application/json"}) is None
    assert read_ratelimit_headers({"x-ratelimit-remaining-requests": "many"}) is None


def test_an_allowance_says_how_long_until_enough_is_back():
    # the reset is when all of it is back; one request of 500 comes back in a 500th of that
    assert Allowance(500, 0, 60.0).wait_s(1) == pytest.approx(0.12)
    assert Allowance(None, 0, 2.0).wait_s(1) == pytest.approx(2.0)
    assert Allowance(30_000, 100, 60.0).wait_s(400) == pytest.approx(0.6)
    assert Allowance(500, 3, 60.0).wait_s(1) is None
    assert Allowance(500, 0, None).wait_s(1) is None


# ----- the slow-down, congestion, storms, budgets ----------------------------------------------


def test_the_slowdown_holds_until_its_end_then_releases_each_worker_with_jitter():
    slowdown = Slowdown(FixedRng(0.5))
    assert slowdown.release_at(0.0) is None
    slowdown.hold(4.0, now=10.0, reason="r")
    assert slowdown.release_at(11.0) == pytest.approx(14.0 + 0.5 * 1.0)  # a quarter of the hold, half of it
    slowdown.hold(1.0, now=11.0, reason="shorter")  # ends earlier: changes nothing
    assert (slowdown.remaining_s(11.0), slowdown.reason, slowdown.holds) == (3.0, "r", 1)
    slowdown.hold(10.0, now=12.0, reason="longer")  # extends the same hold
    assert (slowdown.remaining_s(12.0), slowdown.reason, slowdown.holds) == (10.0, "longer", 1)
    assert slowdown.release_at(12.0) == pytest.approx(22.0 + 0.5 * 2.0)  # the jitter is at most 2 s
    assert slowdown.release_at(22.0) is None
    slowdown.hold(1e6, now=30.0, reason="absurd")
    assert (slowdown.remaining_s(30.0), slowdown.holds) == (MAX_HOLD_S, 2)


def test_a_short_hold_releases_the_held_workers_over_a_round_trip():
    slowdown = Slowdown(FixedRng(1.0))
    slowdown.hold(0.004, now=0.0, reason="r", round_trip_s=0.5)
    assert slowdown.release_at(0.0) == pytest.approx(0.504)


def test_a_pace_starts_only_after_a_long_wait_at_the_limit_the_wait_implies():
    pace = Pace(now=0.0)
    for i in range(1200):  # a minute's allowance spent in the first 6 s
        pace.answered(i / 200)
    assert pace.overloaded(6.0, wait_s=0.01) is False and pace.rate is None  # a per-second limit: no pace
    # the server admits nothing for the rest of the minute: the limit is what it took in the
    # last 60 - 54 s, 1,200 a minute, not the 200 a second the run went at
    assert pace.overloaded(6.0, wait_s=54.0) is True
    assert (pace.limit, pace.rate) == (pytest.approx(20.0), pytest.approx(16.0))


def test_after_a_cut_of_the_limit_the_long_wait_gives_the_new_limit():
    pace = Pace(now=0.0)
    for i in range(2400):  # 20 a second for two minutes
        pace.answered(i / 20)
    assert pace.overloaded(120.0, wait_s=0.05) is False  # no pace yet, and a short wait starts none
    # the limit was cut to 600 a minute: the window of 1,200 admits nothing for 30 s
    assert pace.overloaded(120.0, wait_s=30.0) is True
    assert pace.limit == pytest.approx(10.0, abs=0.05) and pace.rate == pytest.approx(8.0, abs=0.05)


def test_a_pace_lets_go_only_when_a_minute_since_the_cut_took_more_than_the_limit():
    pace = Pace(now=0.0)
    for i in range(2400):  # 20 a second for two minutes, then the limit is cut to 600 a minute
        pace.answered(i / 20)
    assert pace.overloaded(120.0, wait_s=30.0) and pace.limit == pytest.approx(10.0, abs=0.05)
    # the minute before the cut holds 1,200 good answers, twice the new limit: that is no probe taken
    for i in range(600):  # at the limit for a minute
        pace.answered(120.0 + i / 10)
    assert pace.rate is not None
    for i in range(1, 900):  # then at 1.5 times it: within a minute the server took more than 1.2 times it
        pace.answered(180.0 + i / 15)
        if pace.rate is None:
            break
    assert (pace.rate, pace.limit) == (None, 0.0)
    # x s into the faster answers, the minute holds 10 × (60 - x) + 15 × x: 720 (1.2 × 600) at x = 24
    assert i / 15 == pytest.approx(24.0, abs=0.2)


LIMIT = 550 / 60  # 10 answers a second for a minute, and a wait of 5 s: the window held the last 55 s


def _paced_after_a_minute_at_ten_a_second() -> Pace:
    pace = Pace(now=0.0)
    for i in range(600):
        pace.answered(i / 10)
    assert pace.overloaded(60.0, wait_s=5.0)
    assert (pace.limit, pace.rate) == (pytest.approx(LIMIT), pytest.approx(0.8 * LIMIT))
    return pace


def test_a_pace_climbs_back_lingers_at_the_limit_then_probes_faster_and_faster():
    pace = _paced_after_a_minute_at_ten_a_second()
    rates = {}
    for step in range(1, 30 * 10 + 1):  # 10 answers a second from then on: less than it probes for
        pace.answered(60.0 + step / 10)
        rates[step / 10] = pace.rate
    # the curve: LIMIT × (1 + 0.2 × ((t - 10) / 10)³) requests a second, t seconds after the cut
    for t, share in ((5.0, 0.975), (10.0, 1.0), (15.0, 1.025), (20.0, 1.2), (30.0, 2.6)):
        assert rates[t] == pytest.approx(share * LIMIT), t


def test_the_curve_waits_through_a_hold_and_grows_to_three_times_the_limit_at_most():
    pace = _paced_after_a_minute_at_ten_a_second()
    pace.answered(60.5)
    pace.answered(90.5)  # 30 s without an answer: a hold, not time on the curve
    assert pace.rate == pytest.approx(LIMIT * (1 + 0.2 * ((0.5 - 10) / 10) ** 3))  # 0.5 s on the curve
    for step in range(1, 400):
        pace.answered(90.5 + step / 10)
    assert pace.rate == pytest.approx(3 * LIMIT)  # not LIMIT × (1 + 0.2 × 3³)


def test_a_pace_is_cut_at_most_once_a_second_by_any_429():
    pace = _paced_after_a_minute_at_ten_a_second()
    assert pace.overloaded(60.9, wait_s=5.0) is False
    assert pace.overloaded(61.0, wait_s=0.01) is True  # once there is a pace, any 429 reads the limit again
    assert pace.limit == pytest.approx(589 / 60)  # the last 59.99 s, in whole buckets
    assert pace.rate == pytest.approx(0.8 * 589 / 60)


def test_without_answers_there_is_no_pace_to_follow():
    pace = Pace(now=0.0)
    assert pace.overloaded(5.0, wait_s=30.0) is False and pace.rate is None
    pace.answered(1.0)
    assert pace.overloaded(5.0, wait_s=60.0) is False  # the window holds nothing of ours: no limit to read


def quiet_congestion() -> Congestion:
    """A Congestion that has seen a server refuse nothing at random."""
    congestion = Congestion()
    congestion.background = 0.0
    return congestion


def test_congestion_needs_several_signals_among_the_last_answers():
    congestion = quiet_congestion()
    assert [congestion.note(signal, at) for at, signal in enumerate((True, False, True, False, True))] == [False] * 5
    assert congestion.note(True, 5) is True  # 4 of the last 8
    assert congestion.note(False, 6) is False  # an answer that is not a signal is never overload
    for at in range(7, 15):
        congestion.note(False, at)
    assert congestion.note(True, 15) is False  # the old ones were forgotten


def test_congestion_judges_the_latest_by_the_moment_given_not_by_arrival():
    congestion = quiet_congestion()
    for at in range(8):
        congestion.note(False, at / 10)  # requests sent before the limit was hit, answered well
    # four refused requests sent after them: the limit is hit, though more good answers of
    # requests sent earlier (still on their round trip) come in between
    verdicts = []
    for i in range(4):
        verdicts.append(congestion.note(True, 1.0 + i / 100))
        verdicts.append(congestion.note(False, 0.5 + i / 100))
    assert verdicts == [False] * 6 + [True, False]


def test_before_the_server_said_much_five_of_eight_are_needed():
    congestion = Congestion()
    assert [congestion.note(True, at) for at in range(5)] == [False] * 4 + [True]


def test_a_server_that_refuses_some_at_random_needs_more_signals_for_overload():
    congestion = Congestion()
    for at in range(2000):  # one in twenty refused, evenly: 5 %
        congestion.note(at % 20 == 0, at)
    assert congestion.background == pytest.approx(0.05, abs=0.005)
    # four, then five of the last eight: what such a server does at random every few thousand answers
    verdicts = [congestion.note(True, 2000 + at) for at in range(6)]
    assert verdicts == [False] * 5 + [True]  # six of eight: under one in a million at random


def test_overload_below_the_usual_four_and_answers_that_say_nothing_of_the_background():
    congestion = quiet_congestion()
    for at in range(8):
        congestion.note(False, at)
    assert congestion.note(True, 8, least=1) is True  # one signal where there never is one
    congestion.forget_recent()
    assert congestion.overloaded(least=1) is False
    # one in ten refused, but kept out of the background (a probe above the pace): it stays where it was
    for at in range(9, 400):
        congestion.note(at % 10 == 0, at, background=False)
    assert congestion.background == 0.0
    for at in range(400, 800):
        congestion.note(at % 10 == 0, at)
    assert congestion.background > 0.08


def test_random_faults_at_four_percent_rarely_look_like_overload():
    rng = random.Random(3)
    congestion = Congestion()
    overloads = sum(congestion.note(rng.random() < 0.04, i) for i in range(100_000))
    assert overloads < 20  # of about 4,000 signals


def test_a_storm_pauses_when_most_recent_requests_fail_for_good():
    storm = StormDetector()
    reasons = [storm.finished("HTTP 404" if i % 4 else None) for i in range(19)]
    assert reasons == [None] * 19  # not judged before 20 requests
    assert storm.finished("HTTP 404") == (
        "15 of the last 20 requests failed with errors that retrying cannot fix (mostly HTTP 404, 15 times); "
        "check the job and the failed requests, then resume to go on anyway"
    )
    storm.forgive()
    assert all(storm.finished("HTTP 404") is None for _ in range(100))


def test_half_of_the_requests_failing_is_not_a_storm():
    storm = StormDetector()
    assert all(storm.finished("HTTP 400" if i % 2 else None) is None for i in range(200))


def test_budgets_pause_at_their_allowance_and_a_resume_grants_as_much_again():
    budget = Budget(max_total_tokens=1000, max_cost_usd=0.0, prices=None)
    assert budget.exceeded(400, 599) is None
    assert budget.exceeded(400, 600) == (
        "the token budget is spent: 1,000 tokens used of 1,000 allowed (limits.max_total_tokens); "
        "resume to allow as many again"
    )
    budget.grant_more(400, 650)
    assert budget.tokens_allowed == 2050 and budget.exceeded(1000, 1000) is None
    budget.set_limits(0, 0.0)
    assert budget.exceeded(10**9, 10**9) is None


def test_a_cost_budget_counts_with_the_prices_of_the_job():
    budget = Budget(max_total_tokens=0, max_cost_usd=1.5, prices=Prices(input=0.5, output=2.0))
    assert budget.cost_usd(1_000_000, 400_000) == pytest.approx(1.3)
    assert budget.exceeded(1_000_000, 400_000) is None
    assert budget.exceeded(1_000_000, 500_000) == (
        "the cost budget is spent: $1.50 used of $1.50 allowed (limits.max_cost_usd); resume to allow as much again"
    )
    budget.grant_more(1_000_000, 500_000)
    assert budget.cost_allowed == pytest.approx(3.0)


# ----- the adaptive controller -----------------------------------------------------------------


def serve(
    controller: AdaptiveConcurrency,
    start: float,
    seconds: float,
    *,
    concurrency: int | None = None,
    in_flight: int | None = None,
    latency: float = 0.1,
) -> float:
    """Rounds of `concurrency` successes (default: the target), each `latency` long; returns the time reached.

    `in_flight` is what each success reports (default: the target, i.e. every worker busy).
    """
    now = start
    for _ in range(round(seconds / latency)):
        now += latency
        for _ in range(concurrency or controller.target):
            controller.success(now - latency, now, in_flight if in_flight is not None else controller.target)
    return now


def test_slow_start_grows_by_half_each_round_trip_up_to_the_maximum():
    controller = AdaptiveConcurrency(start=4, low=1, high=50, now=0.0)
    targets = []
    now = 0.0
    for _ in range(6):
        now = serve(controller, now, 0.1)
        targets.append(controller.target)
    assert targets == [6, 9, 13, 20, 30, 45]  # half more each round, counted as successes come
    serve(controller, now, 0.2)
    assert controller.target == 50


def test_a_loss_cuts_to_seventy_percent_of_what_was_sustained_at_most_once_a_second():
    controller = AdaptiveConcurrency(start=40, low=2, high=100, now=0.0)
    # 40 workers, but the server answered only 20 at a time well for the last second
    now = serve(controller, 0.0, 1.0, concurrency=20, in_flight=1)
    assert controller.target == 40
    assert controller.loss(started=now - 0.05, now=now) == 14  # 0.7 × 20
    assert controller.loss(started=now + 0.1, now=now + 0.5) is None  # within a second of the cut
    assert controller.loss(started=now - 0.01, now=now + 1.5) is None  # sent before the cut
    assert controller.cuts == 1
    assert controller.loss(started=now + 1.2, now=now + 1.5) == 9  # nothing sustained since: 0.7 × 14
    assert controller.cuts == 2


def test_after_a_cut_the_target_climbs_back_lingers_then_probes_above():
    controller = AdaptiveConcurrency(start=30, low=1, high=100, now=0.0)
    now = serve(controller, 0.0, 1.0, in_flight=1)
    assert controller.loss(now - 0.1, now) == 21
    targets = []
    for _ in range(6):
        now = serve(controller, now, 1.0)
        targets.append(controller.target)
    # W(t) = 0.4 (t - K)³ + 30 with K = (30 × 0.3 / 0.4)^(1/3) ≈ 2.8 s: back to 30, flat around it, then up
    assert targets == [27, 29, 30, 30, 34, 42]


def test_the_target_stays_within_min_and_max_and_does_not_grow_while_idle():
    controller = AdaptiveConcurrency(start=12, low=8, high=16, now=0.0)
    assert controller.loss(-1.0, 5.0) == 8
    assert controller.loss(6.0, 7.0) is None  # at the minimum already
    for second in range(8, 30):
        controller.success(second - 0.1, float(second), in_flight=3)  # few in flight: no growth
    assert controller.target == 8
    serve(controller, 30.0, 30.0)
    assert controller.target == 16
    controller.reset(4, 70.0)
    assert controller.target == 8


def test_a_long_hold_after_a_cut_is_not_time_on_the_curve():
    controller = AdaptiveConcurrency(start=30, low=1, high=1000, now=0.0)
    now = serve(controller, 0.0, 1.0, in_flight=1)
    assert controller.loss(now - 0.1, now) == 21
    # dispatch held for 30 s (a 429's Retry-After), then the first answer, with the target in flight
    controller.success(now + 30.0, now + 30.5, in_flight=21)
    assert controller.target == 21  # W(0.5 s) of the curve, not W(30.5 s) = 0.4 × 27.7³ + 30 ≈ 8,500

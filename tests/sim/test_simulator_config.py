"""The simulator's pure parts: fault mixes, settings, draws, request parsing, huge bodies."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace

import orjson
import pytest

from tokenflow_tui.sim import FAULT_KINDS, SimulatorConfig, parse_fail, validate_fail
from tokenflow_tui.sim.draws import FaultDraw, LatencyDraw
from tokenflow_tui.sim.faults import huge_chunks
from tokenflow_tui.sim.http import MAX_BODY_BYTES, HttpError, Request, parse_request
from tokenflow_tui.sim.window import SlidingWindow

VALID_KINDS = "429, 500, 503, reset, stall, malformed, truncated, drip, huge, ctype, no_done, length, non_json"


def test_parse_fail_reads_the_documented_example() -> None:
    spec = "429=0.05,500=0.02,reset=0.01,stall=0.01,malformed=0.01"
    assert parse_fail(spec) == {"429": 0.05, "500": 0.02, "reset": 0.01, "stall": 0.01, "malformed": 0.01}


def test_parse_fail_accepts_spaces_an_empty_spec_and_every_kind() -> None:
    assert parse_fail("") == {}
    assert parse_fail(" 429 = 0.5 , 503=0.5 ,") == {"429": 0.5, "503": 0.5}
    assert parse_fail(",".join(f"{kind}=0.05" for kind in FAULT_KINDS)) == {kind: 0.05 for kind in FAULT_KINDS}
    # 0.1 + 0.2 + 0.7 is slightly above 1 in binary floats, and must still pass.
    assert parse_fail("429=0.1,500=0.2,503=0.7") == {"429": 0.1, "500": 0.2, "503": 0.7}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("timeout=0.1", f"unknown fault kind 'timeout'; valid kinds: {VALID_KINDS}"),
        ("429=often", "the probability of 429 must be a number from 0 to 1, not 'often'"),
        ("429=", "the probability of 429 must be a number from 0 to 1, not ''"),
        ("500=1.5", "the probability of 500 must be from 0 to 1, not 1.5"),
        ("500=-0.1", "the probability of 500 must be from 0 to 1, not -0.1"),
        ("500=nan", "the probability of 500 must be from 0 to 1, not nan"),
        ("500=2", "the probability of 500 must be from 0 to 1, not 2"),
        ("429=0.6,500=0.5", "the fault probabilities add up to 1.1, more than 1"),
        ("429", "'429' is not KIND=PROBABILITY (for example 429=0.05)"),
        ("429=0.1,429=0.2", "the fault kind 429 is given twice"),
    ],
)
def test_parse_fail_explains_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_fail(spec)
    assert str(raised.value) == message


def test_validate_fail_takes_job_file_values() -> None:
    assert validate_fail({"429": 1, "reset": 0}) == {"429": 1.0, "reset": 0.0}
    assert type(validate_fail({"429": 1})["429"]) is float


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"429": "0.1"}, "the probability of 429 must be a number from 0 to 1, not '0.1'"),
        ({"429": True}, "the probability of 429 must be a number from 0 to 1, not True"),
        ({"404": 0.1}, f"unknown fault kind '404'; valid kinds: {VALID_KINDS}"),
        ({"429": 0.7, "stall": 0.7}, "the fault probabilities add up to 1.4, more than 1"),
    ],
)
def test_validate_fail_explains_what_is_wrong(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        validate_fail(mapping)
    assert str(raised.value) == message


def test_config_defaults_and_a_read_only_fault_mix() -> None:
    config = SimulatorConfig(fail={"429": 0.5})
    assert (config.latency_ms, config.jitter_ms, config.seed) == (200.0, 0.0, None)
    assert (config.retry_after, config.retry_after_ms, config.stall_s, config.drip_interval_ms) == (
        1,
        None,
        600.0,
        100.0,
    )
    assert (config.huge_bytes, config.rpm_limit, config.require_key, config.model) == (
        64 * 1024 * 1024,
        0,
        None,
        "sim-1",
    )
    with pytest.raises(TypeError):
        config.fail["500"] = 0.5  # type: ignore[index]
    assert replace(config, latency_ms=0).fail == {"429": 0.5}


def test_config_never_shows_the_key() -> None:
    assert "sk-123" not in repr(SimulatorConfig(require_key="sk-123"))


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"latency_ms": -1}, "latency_ms must be a number of 0 or more, not -1"),
        ({"jitter_ms": math.inf}, "jitter_ms must be a number of 0 or more, not inf"),
        (
            {"retry_after": "soon"},
            "retry_after must be whole seconds of 0 or more or one of date, absurd, none, not 'soon'",
        ),
        ({"retry_after_ms": 1.5}, "retry_after_ms must be whole milliseconds of 0 or more, not 1.5"),
        ({"stall_s": 0}, "stall_s must be a number above 0, not 0"),
        ({"huge_bytes": 10}, "huge_bytes must be a whole number of at least 64, not 10"),
        ({"rpm_limit": -5}, "rpm_limit must be a whole number of 0 or more, not -5"),
        ({"require_key": ""}, "require_key must be a non-empty string or None"),
        ({"fail": {"429": 2}}, "the probability of 429 must be from 0 to 1, not 2"),
        ({"fail": "429=0.1"}, "fail must be a mapping of fault kind to probability, not '429=0.1'"),
    ],
)
def test_config_refuses_bad_values_with_a_sentence(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        SimulatorConfig(**knobs)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_fault_draw_proportions_stay_within_bounds() -> None:
    mix = {"429": 0.1, "500": 0.05, "reset": 0.02}
    draw = FaultDraw(mix, random.Random(11))
    draws = 100_000
    counts = Counter(draw() for _ in range(draws))
    for kind, probability in [*mix.items(), (None, 0.83)]:
        sigma = math.sqrt(draws * probability * (1 - probability))
        assert abs(counts[kind] - draws * probability) < 5 * sigma, kind
    assert set(counts) == {"429", "500", "reset", None}


def test_fault_draw_does_not_depend_on_the_mapping_order() -> None:
    forward = FaultDraw({"429": 0.3, "stall": 0.3}, random.Random(3))
    backward = FaultDraw({"stall": 0.3, "429": 0.3}, random.Random(3))
    assert [forward() for _ in range(200)] == [backward() for _ in range(200)]


def test_latency_draw_is_uniform_around_the_mean_and_never_negative() -> None:
    rng = random.Random(9)
    delays = [LatencyDraw(200, 50, rng)() for _ in range(2000)]
    assert 0.15 <= min(delays) < 0.152 and 0.248 < max(delays) <= 0.25
    assert LatencyDraw(200, 0, rng)() == 0.2
    clamped = [LatencyDraw(10, 50, rng)() for _ in range(500)]
    assert min(clamped) == 0.0 and max(clamped) <= 0.06


def test_sliding_window_frees_slots_a_window_after_each_admission() -> None:
    window = SlidingWindow(2, window_s=60.0)
    assert [window.admit(0.0), window.admit(10.0), window.admit(20.0)] == [0.0, 0.0, 40.0]
    assert window.admit(60.0) == 0.0
    assert window.admit(65.0) == 5.0


def test_parse_request_waits_for_a_whole_request_and_leaves_the_next() -> None:
    first = b"POST /v1/completions?x=1 HTTP/1.1\r\nContent-Length: 2\r\nAuthorization: Bearer k\r\n\r\n{}"
    buffer = bytearray()
    for byte in first:
        assert parse_request(buffer) is None
        buffer.append(byte)
    buffer += b"GET /v1/models HTTP/1.0\r\n\r\n"
    assert parse_request(buffer) == Request("POST", "/v1/completions", b"{}", b"Bearer k", True)
    assert parse_request(buffer) == Request("GET", "/v1/models", b"", None, False)
    assert buffer == bytearray()


def test_parse_request_reads_connection_tokens() -> None:
    close = parse_request(bytearray(b"GET / HTTP/1.1\r\nconnection: Close\r\n\r\n"))
    keep = parse_request(bytearray(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
    assert close is not None and keep is not None
    assert (close.keep_alive, keep.keep_alive) == (False, True)


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"GET /\r\n\r\n", 400, "the request line is not METHOD PATH HTTP/1.x"),
        (b"GET / HTTP/1.1\r\nbroken\r\n\r\n", 400, "a header line has no colon"),
        (b"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400, "the Content-Length is not a number"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1),
            413,
            f"the request body is larger than {MAX_BODY_BYTES} bytes",
        ),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000, 431, "the request head is too large"),
    ],
    ids=["request-line", "header-line", "content-length", "body-size", "head-size"],
)
def test_parse_request_refuses_what_it_cannot_read(raw: bytes, status: int, message: str) -> None:
    with pytest.raises(HttpError) as raised:
        parse_request(bytearray(raw))
    assert (raised.value.status, raised.value.message) == (status, message)


def test_huge_chunks_make_exactly_the_size_in_bounded_pieces() -> None:
    chunks = list(huge_chunks(200_003))
    assert sum(map(len, chunks)) == 200_003
    assert max(map(len, chunks)) == 65536
    assert set(orjson.loads(b"".join(chunks))) == {"object", "padding"}
    assert orjson.loads(b"".join(huge_chunks(64))) == {"object": "chat.completion", "padding": "x" * 20}

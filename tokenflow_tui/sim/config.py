"""The simulator's settings, and the checks of a fault mix given on a command line or in a job file."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeGuard

# 429, 500, 503: that status with an OpenAI-style error body (429 with the configured retry headers);
# reset: the connection is aborted with an RST; stall: no answer, the connection closes after stall_s;
# malformed: 200 JSON that does not parse; truncated: 200 cut halfway through, then the connection closes;
# drip: a valid answer, a few bytes every drip_interval_ms; huge: a 200 JSON body of huge_bytes;
# ctype: 200 with an HTML page.
# A streamed request ("stream": true) gets its events, token_interval_ms apart; there reset, stall and
# truncated strike halfway through the events (an RST; silence until stall_s; the connection closed),
# malformed sends a chunk that does not parse halfway through, and no_done ends the stream without its
# closing "data: [DONE]" (a non-streamed request with no_done gets its answer as usual).
# Two faults shape the answer, not the transport: length cuts it in half with finish_reason "length";
# non_json makes it chatty text where json_answers would give a JSON object.
FAULT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "503",
    "reset",
    "stall",
    "malformed",
    "truncated",
    "drip",
    "huge",
    "ctype",
    "no_done",
    "length",
    "non_json",
)
ANSWER_FAULTS: tuple[str, ...] = ("length", "non_json")
RETRY_AFTER_FORMS: tuple[str, ...] = ("date", "absurd", "none")
MIN_HUGE_BYTES = 64  # room for the JSON wrapper around the padding

# Probabilities written as decimals rarely add up exactly (0.1 + 0.2 + 0.7 > 1 in binary floats).
_SUM_TOLERANCE = 1e-9


def _probability(kind: object, value: object, written: str) -> float:
    """`value` checked as the probability of `kind`; `written` is how the user wrote it."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; valid kinds: {', '.join(FAULT_KINDS)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"the probability of {kind} must be a number from 0 to 1, not {written}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"the probability of {kind} must be from 0 to 1, not {written}")
    return float(value)


def _check_total(mix: Mapping[str, float]) -> None:
    total = sum(mix.values())
    if total > 1.0 + _SUM_TOLERANCE:
        raise ValueError(f"the fault probabilities add up to {total:g}, more than 1")


def validate_fail(mapping: Mapping[str, object]) -> dict[str, float]:
    """Check a fault mix (kind → probability), as read from a job file; return it with float values."""
    mix = {kind: _probability(kind, value, repr(value)) for kind, value in mapping.items()}
    _check_total(mix)
    return mix


def parse_fail(spec: str) -> dict[str, float]:
    """Parse a fault mix written `429=0.05,500=0.02,reset=0.01`; an empty string means no faults."""
    mix: dict[str, float] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        kind, sep, text = item.partition("=")
        kind, text = kind.strip(), text.strip()
        if not sep:
            raise ValueError(f"{item!r} is not KIND=PROBABILITY (for example 429=0.05)")
        if kind in mix:
            raise ValueError(f"the fault kind {kind} is given twice")
        try:
            value: object = float(text)
            written = text
        except ValueError:
            value, written = text, repr(text)
        mix[kind] = _probability(kind, value, written)
    _check_total(mix)
    return mix


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulator behaves. Invalid values raise ValueError with a one-line sentence.

    retry_after: the Retry-After of a "429" fault: whole seconds, "date" (an HTTP-date),
    "absurd" (999999 seconds) or "none" (no header). retry_after_ms: the retry-after-ms
    header of a "429" fault, or None for no such header. rpm_limit: the hidden limit, in requests
    per `rate_window_s` seconds (a minute, unless a test shrinks the scale). token_interval_ms: the
    pause between two events of a streamed answer (0: all at once). ratelimit_headers:
    answers carry x-ratelimit-limit-, remaining- and reset-requests headers, as OpenAI's do.
    """

    latency_ms: float = 200.0
    jitter_ms: float = 0.0
    fail: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    retry_after: int | str = 1
    retry_after_ms: int | None = None
    stall_s: float = 600.0
    drip_interval_ms: float = 100.0
    token_interval_ms: float = 0.0
    huge_bytes: int = 64 * 1024 * 1024
    rpm_limit: int = 0
    rate_window_s: float = 60.0
    ratelimit_headers: bool = False
    require_key: str | None = field(default=None, repr=False)
    model: str = "sim-1"
    json_answers: bool = False

    def __post_init__(self) -> None:
        _require(
            isinstance(self.fail, Mapping), f"fail must be a mapping of fault kind to probability, not {self.fail!r}"
        )
        object.__setattr__(self, "fail", MappingProxyType(validate_fail(self.fail)))
        for name in ("latency_ms", "jitter_ms", "token_interval_ms"):
            value = getattr(self, name)
            _require(_is_number(value) and value >= 0, f"{name} must be a number of 0 or more, not {value!r}")
        for name in ("stall_s", "drip_interval_ms"):
            value = getattr(self, name)
            _require(_is_number(value) and value > 0, f"{name} must be a number above 0, not {value!r}")
        _require(self.seed is None or _is_int(self.seed), f"seed must be an integer, not {self.seed!r}")
        _require(
            (_is_int(self.retry_after) and self.retry_after >= 0) or self.retry_after in RETRY_AFTER_FORMS,
            f"retry_after must be whole seconds of 0 or more or one of {', '.join(RETRY_AFTER_FORMS)}, "
            f"not {self.retry_after!r}",
        )
        _require(
            self.retry_after_ms is None or (_is_int(self.retry_after_ms) and self.retry_after_ms >= 0),
            f"retry_after_ms must be whole milliseconds of 0 or more, not {self.retry_after_ms!r}",
        )
        _require(
            _is_int(self.huge_bytes) and self.huge_bytes >= MIN_HUGE_BYTES,
            f"huge_bytes must be a whole number of at least {MIN_HUGE_BYTES}, not {self.huge_bytes!r}",
        )
        _require(
            _is_int(self.rpm_limit) and self.rpm_limit >= 0,
            f"rpm_limit must be a whole number of 0 or more, not {self.rpm_limit!r}",
        )
        _require(
            _is_number(self.rate_window_s) and self.rate_window_s > 0,
            f"rate_window_s must be a number above 0, not {self.rate_window_s!r}",
        )
        _require(
            isinstance(self.ratelimit_headers, bool),
            f"ratelimit_headers must be true or false, not {self.ratelimit_headers!r}",
        )
        _require(isinstance(self.json_answers, bool), f"json_answers must be true or false, not {self.json_answers!r}")
        _require(
            self.require_key is None or (isinstance(self.require_key, str) and self.require_key != ""),
            "require_key must be a non-empty string or None",
        )
        _require(
            isinstance(self.model, str) and self.model != "", f"model must be a non-empty string, not {self.model!r}"
        )

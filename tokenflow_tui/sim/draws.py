"""The per-request random draws, from one seedable RNG: which fault, if any, and how long to wait."""

from __future__ import annotations

import random
from collections.abc import Mapping
from itertools import accumulate

from .config import FAULT_KINDS


class FaultDraw:
    """Picks at most one fault kind per request, each with its probability."""

    def __init__(self, mix: Mapping[str, float], rng: random.Random) -> None:
        # A fixed kind order, so a seed gives the same faults whatever the mapping's order.
        kinds = [kind for kind in FAULT_KINDS if mix.get(kind, 0.0) > 0.0]
        self._bounds = list(zip(accumulate(mix[kind] for kind in kinds), kinds))
        self._rng = rng

    def __call__(self) -> str | None:
        if not self._bounds:
            return None
        x = self._rng.random()
        for bound, kind in self._bounds:
            if x < bound:
                return kind
        return None


class LatencyDraw:
    """A delay in seconds: `latency_ms` give or take up to `jitter_ms` (uniform), never below 0."""

    def __init__(self, latency_ms: float, jitter_ms: float, rng: random.Random) -> None:
        self._latency_s = latency_ms / 1000
        self._jitter_s = jitter_ms / 1000
        self._rng = rng

    def __call__(self) -> float:
        if not self._jitter_s:
            return self._latency_s
        return max(0.0, self._latency_s + self._rng.uniform(-self._jitter_s, self._jitter_s))

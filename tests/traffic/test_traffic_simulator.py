"""The simulator's side of the traffic suites: a limit per window of any length, changed while
serving, and OpenAI's x-ratelimit headers."""

from __future__ import annotations

import httpx
import pytest

from tokenflow_tui.engine import ManualClock
from tokenflow_tui.sim import Simulator, SimulatorConfig
from tokenflow_tui.sim.cli import add_arguments, config_from_args, config_to_args
from tokenflow_tui.sim.window import SlidingWindow

CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


async def statuses(client: httpx.AsyncClient, sim: Simulator, count: int) -> list[int]:
    return [(await client.post(f"{sim.base_url}/chat/completions", json=CHAT)).status_code for _ in range(count)]


async def test_a_limit_per_second_and_a_change_while_serving():
    clock = ManualClock()
    async with Simulator(SimulatorConfig(latency_ms=0, rpm_limit=3, rate_window_s=1.0), clock=clock) as sim:
        async with httpx.AsyncClient() as client:
            assert await statuses(client, sim, 4) == [200, 200, 200, 429]
            refused = await client.post(f"{sim.base_url}/chat/completions", json=CHAT)
            assert refused.json()["error"]["message"] == "Rate limit reached for sim-1: 3 requests per 1 seconds."
            assert refused.headers["retry-after-ms"] == "1000"
            clock.advance(1.0)
            sim.set_rate_limit(1)  # three were admitted a moment ago: all must age out before one more
            assert await statuses(client, sim, 2) == [200, 429]
            clock.advance(0.5)
            sim.set_rate_limit(0)  # no limit
            assert await statuses(client, sim, 3) == [200, 200, 200]
            sim.set_rate_limit(2, window_s=60.0)
            assert await statuses(client, sim, 3) == [200, 200, 429]
            with pytest.raises(ValueError, match="limit must be ≥ 0 and window_s > 0"):
                sim.set_rate_limit(-1)
        assert sim.stats.outcomes["rate_limited"] == 4


def test_a_window_cut_below_what_it_holds_waits_for_enough_to_age_out():
    window = SlidingWindow(4, window_s=10.0)
    for t in (0.0, 1.0, 2.0, 3.0):
        assert window.admit(t) == 0.0
    window.limit = 2
    # one more fits when only one is left: the first three must age out, the one at 2.0 at 12.0
    assert window.admit(4.0) == pytest.approx(8.0)
    assert (window.remaining(4.0), window.reset_s(4.0)) == (0, pytest.approx(9.0))
    assert window.admit(12.5) == 0.0
    assert (window.remaining(12.5), window.reset_s(12.5)) == (0, pytest.approx(10.0))


async def test_answers_carry_openai_ratelimit_headers_when_asked():
    clock = ManualClock()
    config = SimulatorConfig(latency_ms=0, rpm_limit=3, rate_window_s=2.0, ratelimit_headers=True)
    async with Simulator(config, clock=clock) as sim:
        async with httpx.AsyncClient() as client:
            seen = []
            for _ in range(3):
                response = await client.post(f"{sim.base_url}/chat/completions", json=CHAT)
                clock.advance(0.5)
                seen.append(
                    tuple(response.headers[f"x-ratelimit-{name}-requests"] for name in ("limit", "remaining", "reset"))
                )
    # the reset is when the window is whole again: the newest admission plus the window
    assert seen == [("3", "2", "2000ms"), ("3", "1", "2000ms"), ("3", "0", "2000ms")]


def test_the_new_options_travel_to_a_child_process():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = SimulatorConfig(rpm_limit=30, rate_window_s=1.5, ratelimit_headers=True)
    assert config_from_args(parser.parse_args(config_to_args(config)), environ={}) == config
    with pytest.raises(ValueError, match="rate_window_s must be a number above 0, not 0"):
        SimulatorConfig(rate_window_s=0)

"""Client CPU per streamed request (64 tokens an answer): the built-in handler beside a minimal aiohttp SSE loop.

Run: python -m pytest -m benchmark tests/bench/bench_streaming.py -s
(TOKENFLOW_BENCH_REQUESTS sets the measured requests per case and round, default 2000.)
The simulator runs in a child process, so the CPU measured (user + sys of this process, around the
client loop only) is the client's. Cases take turns within each round, so a change of load on the
machine falls on all of them alike; the figures are medians over the rounds. Two ways of sending:
"burst" (every event of an answer at once) and "paced" (one event every 2 ms: one read per token).
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from tokenflow_tui.endpoint.openai_handler import HandlerSettings, OpenAIHandler
from tokenflow_tui.endpoint.transport import make_client
from tokenflow_tui.engine import TokenFlowRequestTrajectory, TokenFlowRequestTrajectoryElement
from tokenflow_tui.sim import SimulatorConfig, SimulatorProcess

REQUESTS = int(os.environ.get("TOKENFLOW_BENCH_REQUESTS", "2000"))
ROUNDS = 3
IN_FLIGHT = 64
TOKENS = 64
# the simulator answers one event per word, cut to max_tokens words: a longer prompt gives 64 of them
LINE = {"messages": [{"role": "user", "content": " ".join(f"word{i}" for i in range(TOKENS + 8))}]}
PARAMS = {"max_tokens": TOKENS}
PACES_MS = {"burst": 0.0, "paced": 2.0}

OneRequest = Callable[[], Awaitable[Any]]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(one_request: OneRequest, total: int) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            await one_request()

    share, extra = divmod(total, IN_FLIGHT)
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(IN_FLIGHT)))


def handler_case(base_url: str, idle_timeout_s: float | None) -> tuple[OneRequest, Callable[[], Awaitable[None]]]:
    settings = HandlerSettings(
        base_url=base_url,
        api="chat",
        model="m",
        params=PARAMS,
        timeout_s=60,
        stream=True,
        idle_timeout_s=idle_timeout_s,
    )
    client = make_client("aiohttp", IN_FLIGHT, 60)
    tokens = [0]

    def heard(n: int) -> None:
        tokens[0] += n

    handler = OpenAIHandler(settings, client, "sk-bench", on_tokens=heard)

    async def one() -> None:
        _, result, _ = await handler(TokenFlowRequestTrajectory([TokenFlowRequestTrajectoryElement(LINE)]))
        assert result.get("streamed_tokens") == TOKENS and result["usage"], result

    return one, client.aclose


def minimal_sse_loop(base_url: str) -> tuple[OneRequest, Callable[[], Awaitable[None]]]:
    """The least a client does for a streamed answer: one session, orjson, a line loop over the body."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT))
    url = base_url + "/chat/completions"
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}

    async def one() -> None:
        body = orjson.dumps({"model": "m", **PARAMS, "stream": True, "stream_options": {"include_usage": True}, **LINE})
        parts = []
        usage = None
        async with session.post(url, data=body, headers=headers) as response:
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].rstrip()
                if data == b"[DONE]":
                    break
                chunk = orjson.loads(data)
                choices = chunk["choices"]
                if choices:
                    content = choices[0]["delta"].get("content")
                    if content:
                        parts.append(content)
                elif chunk.get("usage"):
                    usage = chunk["usage"]
        assert len(parts) == TOKENS and usage, (len(parts), usage)
        "".join(parts)

    return one, session.close


CASES: dict[str, Callable[[str], tuple[OneRequest, Callable[[], Awaitable[None]]]]] = {
    "(a) handler, stream, idle_timeout_s": lambda url: handler_case(url, 30.0),
    "(b) handler, stream, no idle timeout": lambda url: handler_case(url, None),
    "(c) minimal aiohttp SSE loop": minimal_sse_loop,
}


async def measure_all(base_url: str) -> dict[str, tuple[float, float]]:
    made = {name: make(base_url) for name, make in CASES.items()}
    cpu_ms: dict[str, list[float]] = {name: [] for name in CASES}
    rates: dict[str, list[float]] = {name: [] for name in CASES}
    try:
        for one, _ in made.values():
            await drive(one, IN_FLIGHT * 4)  # warm-up: connections, imports, caches
        for _ in range(ROUNDS):
            for name, (one, _) in made.items():
                cpu_before, wall_before = cpu_s(), time.perf_counter()
                await drive(one, REQUESTS)
                cpu_ms[name].append((cpu_s() - cpu_before) * 1000 / REQUESTS)
                rates[name].append(REQUESTS / (time.perf_counter() - wall_before))
    finally:
        for _, close in made.values():
            await close()
    return {name: (statistics.median(cpu_ms[name]), statistics.median(rates[name])) for name in CASES}


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
async def test_client_cpu_per_streamed_request():
    figures: dict[str, dict[str, tuple[float, float]]] = {}
    for pace, interval_ms in PACES_MS.items():
        config = SimulatorConfig(latency_ms=0, token_interval_ms=interval_ms)
        async with SimulatorProcess(config) as simulator:
            figures[pace] = await measure_all(simulator.base_url)
    yardstick = "(c) minimal aiohttp SSE loop"
    lines = [
        f"\n{REQUESTS} streamed requests ({TOKENS} tokens each) x {ROUNDS} rounds per case, {IN_FLIGHT} in flight, "
        f"median; simulator in a child process; load {os.getloadavg()[0]:.2f}",
        f"{'client CPU per request, ms (req/s)':40}" + "".join(f"{pace:>22}" for pace in PACES_MS),
    ]
    for name in CASES:
        cells = "".join(f"{figures[p][name][0]:>9.3f} ({figures[p][name][1]:>6.0f}/s)".rjust(22) for p in PACES_MS)
        lines.append(f"{name:40}{cells}")
    for case in ("(a) handler, stream, idle_timeout_s", "(b) handler, stream, no idle timeout"):
        ratios = "  ".join(f"{p}: {figures[p][case][0] / figures[p][yardstick][0]:.2f}x" for p in PACES_MS)
        lines.append(f"{case[:3]} / (c), the DESIGN §5 ratio (target <= 1.3x): {ratios}")
    print("\n".join(lines))

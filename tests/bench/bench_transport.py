"""Client CPU per HTTP request of the built-in handler and its transports, against a fast local server.

Run: python -m pytest -m benchmark tests/bench/bench_transport.py -s
(TOKENFLOW_BENCH_REQUESTS sets the measured requests per case, default 3000.)
The server runs in a child process, so the CPU measured (user + sys of this process, around the
client loop only) is the client's.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from httpx_aiohttp import HttpxAiohttpClient

from tokenflow_tui.endpoint.openai_handler import HandlerSettings, OpenAIHandler
from tokenflow_tui.endpoint.transport import make_client
from tokenflow_tui.engine import TokenFlowRequestTrajectory, TokenFlowRequestTrajectoryElement

REQUESTS = int(os.environ.get("TOKENFLOW_BENCH_REQUESTS", "3000"))
ROUNDS = 3
IN_FLIGHT = (64, 256)
LINE = {"messages": [{"role": "user", "content": "Write one sentence about the sea."}]}

SERVER = r"""
import asyncio, sys
from aiohttp import web
BODY = (
    b'{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"The sea is wide and deep."},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":14,"completion_tokens":8,"total_tokens":22}}'
)
async def answer(request):
    await request.read()
    return web.Response(body=BODY, content_type="application/json")
async def main():
    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

OneRequest = Callable[[], Awaitable[Any]]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(one_request: OneRequest, in_flight: int, total: int) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            await one_request()

    share, extra = divmod(total, in_flight)
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(in_flight)))


async def measure(one_request: OneRequest, in_flight: int) -> tuple[float, float]:
    """Median client CPU (ms) per request and requests per second over ROUNDS rounds, after a warm-up."""
    await drive(one_request, in_flight, in_flight * 4)
    cpu_ms, rates = [], []
    for _ in range(ROUNDS):
        cpu_before, wall_before = cpu_s(), time.perf_counter()
        await drive(one_request, in_flight, REQUESTS)
        cpu_ms.append((cpu_s() - cpu_before) * 1000 / REQUESTS)
        rates.append(REQUESTS / (time.perf_counter() - wall_before))
    return statistics.median(cpu_ms), statistics.median(rates)


def handler_request(client: Any, base_url: str) -> tuple[OneRequest, Callable[[], Awaitable[None]]]:
    settings = HandlerSettings(base_url=base_url, api="chat", model="m", params={"max_tokens": 32}, timeout_s=30)
    handler = OpenAIHandler(settings, client, "sk-bench")

    async def one() -> None:
        _, result, _ = await handler(TokenFlowRequestTrajectory([TokenFlowRequestTrajectoryElement(LINE)]))
        assert "error" not in result, result

    return one, client.aclose


def minimal_httpx_over_aiohttp(in_flight: int, base_url: str) -> tuple[OneRequest, Callable[[], Awaitable[None]]]:
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    client = HttpxAiohttpClient(limits=limits, timeout=30)
    url = base_url + "/chat/completions"
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}

    async def one() -> None:
        body = orjson.dumps({"model": "m", "max_tokens": 32, **LINE})
        response = await client.post(url, content=body, headers=headers)
        assert orjson.loads(response.content)["choices"][0]["message"]["content"]

    return one, client.aclose


def plain_aiohttp(in_flight: int, base_url: str) -> tuple[OneRequest, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight))
    url = base_url + "/chat/completions"
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}

    async def one() -> None:
        body = orjson.dumps({"model": "m", "max_tokens": 32, **LINE})
        async with session.post(url, data=body, headers=headers) as response:
            assert orjson.loads(await response.read())["choices"][0]["message"]["content"]

    return one, session.close


CASES: dict[str, Callable[[int, str], tuple[OneRequest, Callable[[], Awaitable[None]]]]] = {
    "(a) handler, httpx-aiohttp": lambda n, url: handler_request(make_client("aiohttp", n, 30), url),
    "(b) handler, httpx split pools": lambda n, url: handler_request(make_client("httpx", n, 30), url),
    "(c) handler, one httpx client": lambda n, url: handler_request(
        httpx.AsyncClient(limits=httpx.Limits(max_connections=n, max_keepalive_connections=n), timeout=30), url
    ),
    "(d) minimal httpx-aiohttp loop": minimal_httpx_over_aiohttp,
    "(e) plain aiohttp": plain_aiohttp,
    "(f) handler, asyncio (our HTTP/1.1)": lambda n, url: handler_request(make_client("asyncio", n, 30), url),
}


@pytest.fixture(scope="module")
def server_url():
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
async def test_client_cpu_per_request(server_url):
    figures: dict[tuple[str, int], tuple[float, float]] = {}
    for in_flight in IN_FLIGHT:
        for name, make in CASES.items():
            one_request, close = make(in_flight, server_url)
            try:
                figures[name, in_flight] = await measure(one_request, in_flight)
            finally:
                await close()

    yardstick = "(d) minimal httpx-aiohttp loop"
    header = f"{'client CPU per request, ms (req/s)':34}" + "".join(f"{f'{n} in flight':>22}" for n in IN_FLIGHT)
    lines = [f"\n{REQUESTS} requests x {ROUNDS} rounds per case, median; server in a child process", header]
    for name in CASES:
        cells = "".join(f"{figures[name, n][0]:>9.3f} ({figures[name, n][1]:>6.0f}/s)  ".rjust(22) for n in IN_FLIGHT)
        lines.append(f"{name:34}{cells}")
    ratios = "  ".join(
        f"{n}: {figures['(a) handler, httpx-aiohttp', n][0] / figures[yardstick, n][0]:.2f}x" for n in IN_FLIGHT
    )
    lines.append(f"(a) / (d), the DESIGN §5 ratio (target <= 1.3x): {ratios}")
    print("\n".join(lines))

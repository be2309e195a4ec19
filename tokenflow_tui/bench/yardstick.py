"""The yardsticks: minimal loops that are the least a client does per request (DESIGN §5 compares the
runner to them), all with orjson bodies:

- "httpx": httpx over the httpx-aiohttp transport;
- "aiohttp": raw aiohttp, one ClientSession;
- "sse": for streamed answers, raw aiohttp with a line loop over the body.

`measure()` runs one in a fresh interpreter: `python -m tokenflow_tui.bench.yardstick URL IN_FLIGHT N LOOP`.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass

from .child import BenchError, last_line, run_child
from .workload import STREAM_TOKENS, body, stream_body

LOOPS = ("httpx", "aiohttp", "sse")


@dataclass(frozen=True, slots=True)
class LoopFigures:
    requests: int
    requests_per_s: float
    cpu_ms_per_request: float


def measure(base_url: str, in_flight: int, requests: int, timeout_s: float, loop: str = "httpx") -> LoopFigures:
    """One of the LOOPS, `requests` requests with `in_flight` at a time."""
    if loop not in LOOPS:
        raise ValueError(f"measure: loop must be one of {', '.join(LOOPS)}, got {loop!r}")
    argv = [sys.executable, "-m", "tokenflow_tui.bench.yardstick", base_url, str(in_flight), str(requests), loop]
    run = run_child(argv, timeout_s=timeout_s)
    if run.code != 0:
        raise BenchError(f"the {loop} yardstick loop failed: {last_line(run.stderr)}")
    spent = json.loads(run.stdout)
    return LoopFigures(requests, requests / spent["wall_s"], spent["cpu_s"] * 1000 / requests)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _loop(base_url: str, in_flight: int, requests: int) -> dict[str, float]:
    import httpx
    import orjson
    from httpx_aiohttp import HttpxAiohttpClient

    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"content-type": "application/json"}
    left = requests
    # the client's making and closing count too: a job pays for them as well
    cpu, wall = _cpu_s(), time.perf_counter()
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    client = HttpxAiohttpClient(limits=limits, timeout=60)

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            response = await client.post(url, content=orjson.dumps(body(left)), headers=headers)
            if not orjson.loads(response.content)["choices"][0]["message"]["content"]:
                raise RuntimeError(f"an empty answer: {response.content!r}")

    try:
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    finally:
        await client.aclose()
    return {"cpu_s": _cpu_s() - cpu, "wall_s": time.perf_counter() - wall}


async def _aiohttp_loop(base_url: str, in_flight: int, requests: int) -> dict[str, float]:
    import aiohttp
    import orjson

    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"content-type": "application/json"}
    left = requests
    cpu, wall = _cpu_s(), time.perf_counter()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight))

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(url, data=orjson.dumps(body(left)), headers=headers) as response:
                content = await response.read()
            if not orjson.loads(content)["choices"][0]["message"]["content"]:
                raise RuntimeError(f"an empty answer: {content!r}")

    try:
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    finally:
        await session.close()
    return {"cpu_s": _cpu_s() - cpu, "wall_s": time.perf_counter() - wall}


async def _sse_loop(base_url: str, in_flight: int, requests: int) -> dict[str, float]:
    import aiohttp
    import orjson

    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"content-type": "application/json"}
    left = requests
    cpu, wall = _cpu_s(), time.perf_counter()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight))

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            parts = []
            usage = None
            async with session.post(url, data=orjson.dumps(stream_body(left)), headers=headers) as response:
                async for line in response.content:
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:].rstrip()
                    if data == b"[DONE]":
                        break
                    chunk = orjson.loads(data)
                    if chunk["choices"]:
                        content = chunk["choices"][0]["delta"].get("content")
                        if content:
                            parts.append(content)
                    elif chunk.get("usage"):
                        usage = chunk["usage"]
            if len(parts) != STREAM_TOKENS or usage is None or not "".join(parts):
                raise RuntimeError(f"a streamed answer of {len(parts)} tokens, usage {usage}")

    try:
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    finally:
        await session.close()
    return {"cpu_s": _cpu_s() - cpu, "wall_s": time.perf_counter() - wall}


def main(argv: list[str]) -> None:
    base_url, in_flight, requests, loop = argv[0], int(argv[1]), int(argv[2]), argv[3]
    run = {"httpx": _loop, "aiohttp": _aiohttp_loop, "sse": _sse_loop}[loop]
    print(json.dumps(asyncio.run(run(base_url, in_flight, requests))))


if __name__ == "__main__":
    main(sys.argv[1:])

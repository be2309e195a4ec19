"""The yardstick: a minimal loop of httpx over the httpx-aiohttp transport, with orjson bodies.

It is the least a client with httpx's API does per request (DESIGN §5 compares the runner to it).
`measure()` runs it in a fresh interpreter: `python -m tokenflow_tui.bench.yardstick URL IN_FLIGHT N`.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass

from .child import BenchError, last_line, run_child
from .workload import body


@dataclass(frozen=True, slots=True)
class LoopFigures:
    requests: int
    requests_per_s: float
    cpu_ms_per_request: float


def measure(base_url: str, in_flight: int, requests: int, timeout_s: float) -> LoopFigures:
    argv = [sys.executable, "-m", "tokenflow_tui.bench.yardstick", base_url, str(in_flight), str(requests)]
    run = run_child(argv, timeout_s=timeout_s)
    if run.code != 0:
        raise BenchError(f"the yardstick loop failed: {last_line(run.stderr)}")
    loop = json.loads(run.stdout)
    return LoopFigures(requests, requests / loop["wall_s"], loop["cpu_s"] * 1000 / requests)


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


def main(argv: list[str]) -> None:
    base_url, in_flight, requests = argv[0], int(argv[1]), int(argv[2])
    print(json.dumps(asyncio.run(_loop(base_url, in_flight, requests))))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Benchmark: the simulator in a child process at latency 0, loaded by clients in two other processes.

Run with `python -m pytest tests/bench/bench_simulator.py -m benchmark -s`. The figure that matters is the
server's CPU per request (psutil on the child): at most 50 µs means one core serves 20k requests/s.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from urllib.parse import urlsplit

import orjson
import psutil
import pytest

from tokenflow_tui.sim import SimulatorConfig, SimulatorProcess

CLIENT_PROCESSES = 2
CONNECTIONS_PER_PROCESS = 64
DURATION_S = 5.0
MAX_SERVER_US_PER_REQUEST = 50.0
BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "How fast can you echo this?"}]})


async def _aiohttp_load(base_url: str, connections: int, duration_s: float) -> int:
    import aiohttp

    done = 0
    url = f"{base_url}/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        deadline = time.monotonic() + duration_s

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.post(url, data=BODY, headers=headers) as response:
                    await response.read()
                    assert response.status == 200
                done += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return done


class _RawConnection(asyncio.Protocol):
    """A minimal keep-alive client for this server's answers: one request in flight, Content-Length bodies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def request(self, raw: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self._answer

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        assert self._buffer.startswith(b"HTTP/1.1 200 ")
        start = self._buffer.index(b"Content-Length: ") + 16
        length = int(self._buffer[start : self._buffer.index(b"\r\n", start)])
        if len(self._buffer) >= end + 4 + length:
            del self._buffer[: end + 4 + length]
            assert self._answer is not None
            self._answer.set_result(None)


async def _raw_load(base_url: str, connections: int, duration_s: float) -> int:
    url = urlsplit(base_url)
    head = b"POST %s/chat/completions HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n" % url.path.encode()
    raw = head + b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + duration_s
    done = 0

    async def worker() -> None:
        nonlocal done
        transport, connection = await loop.create_connection(_RawConnection, url.hostname, url.port)
        while time.monotonic() < deadline:
            await connection.request(raw)
            done += 1
        transport.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return done


def _load(client: str, base_url: str, connections: int, duration_s: float) -> tuple[int, float, float]:
    """Run in a client process: requests done, and when the load started and ended (system-wide monotonic)."""
    load = _aiohttp_load if client == "aiohttp" else _raw_load
    started = time.monotonic()
    done = asyncio.run(load(base_url, connections, duration_s))
    return done, started, time.monotonic()


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


@pytest.mark.benchmark
@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", ["raw", "aiohttp"])
def test_simulator_serves_fast_enough_not_to_be_the_bottleneck(client: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    with (
        SimulatorProcess(SimulatorConfig(latency_ms=0)) as sim,
        ProcessPoolExecutor(CLIENT_PROCESSES, mp_context=spawn) as pool,
    ):

        def load_from_every_client(connections: int, duration_s: float) -> list[tuple[int, float, float]]:
            futures = [
                pool.submit(_load, client, sim.base_url, connections, duration_s) for _ in range(CLIENT_PROCESSES)
            ]
            return [future.result() for future in futures]

        server = psutil.Process(sim.pid)
        # Warm up: start the client interpreters and let the server settle before measuring.
        load_from_every_client(4, 0.5)
        cpu_before = _cpu_s(server)
        results = load_from_every_client(CONNECTIONS_PER_PROCESS, DURATION_S)
        server_cpu_s = _cpu_s(server) - cpu_before
    requests = sum(done for done, _, _ in results)
    elapsed_s = max(end for _, _, end in results) - min(start for _, start, _ in results)
    server_us = server_cpu_s / requests * 1e6
    print(
        f"\nsimulator, {client} client, {CLIENT_PROCESSES} processes x {CONNECTIONS_PER_PROCESS} keep-alive connections, "
        f"{psutil.cpu_count()} CPUs: {requests / elapsed_s:,.0f} requests/s; server {server_us:.1f} µs CPU/request "
        f"(one core would serve {1e6 / server_us:,.0f} requests/s); server busy {server_cpu_s / elapsed_s:.0%} of a core"
    )
    assert server_us <= MAX_SERVER_US_PER_REQUEST

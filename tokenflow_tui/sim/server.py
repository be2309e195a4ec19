"""The simulator server: its life cycle, its routes, and what each request gets."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

from ..engine.clock import Clock, SystemClock
from .answers import Api, BadRequest, models_body, read_completion, shaped_answer
from .config import ANSWER_FAULTS, SimulatorConfig
from .connection import Connection, Reply
from .draws import FaultDraw, LatencyDraw
from .faults import MID_STREAM_FAULTS, fault_reply, ratelimit_headers, stream_reply, wait_headers
from .http import HttpError, Request
from .replies import answer_parts, error_reply, json_reply
from .window import SlidingWindow

BASE_PATH = "/v1"
_ROUTES: dict[str, tuple[str, Api | None]] = {
    BASE_PATH + "/chat/completions": ("POST", "chat"),
    BASE_PATH + "/completions": ("POST", "completions"),
    BASE_PATH + "/embeddings": ("POST", "embeddings"),
    BASE_PATH + "/models": ("GET", None),
}
_ID_PREFIX = {"chat": "chatcmpl-sim-", "completions": "cmpl-sim-", "embeddings": "emb-sim-"}
_BACKLOG = 4096  # benchmarks open hundreds of connections at once


@dataclass
class SimulatorStats:
    """Counters for tests: requests by path, and by outcome ("ok", a fault kind, or why refused)."""

    paths: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    connections_opened: int = 0
    connections_open: int = 0


class Simulator:
    """An OpenAI-compatible server on asyncio, with latency and faults drawn per request."""

    def __init__(self, config: SimulatorConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.stats = SimulatorStats()
        self.drip_s = self.config.drip_interval_ms / 1000
        self.stall_s = self.config.stall_s
        self._pace_s = self.config.token_interval_ms / 1000
        self._clock = clock if clock is not None else SystemClock()
        rng = random.Random(self.config.seed)
        self._draw_fault = FaultDraw(self.config.fail, rng)
        self._draw_delay = LatencyDraw(self.config.latency_ms, self.config.jitter_ms, rng)
        self._window: SlidingWindow | None = None
        self.set_rate_limit(self.config.rpm_limit, self.config.rate_window_s)
        key = self.config.require_key
        self._authorization = b"Bearer " + key.encode() if key is not None else None
        self._models = json_reply(200, models_body(self.config.model))
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._host = ""
        self._port = 0
        self._connections: set[Connection] = set()
        self._all_lost: asyncio.Future[None] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0: a free port); raises OSError when it cannot."""
        if self._server is not None:
            raise RuntimeError("the simulator is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), host, port, backlog=_BACKLOG)
        self._host = host
        self._port = self._server.sockets[0].getsockname()[1]

    def set_rate_limit(self, limit: int, window_s: float | None = None) -> None:
        """Change the hidden limit while serving (0: none): `limit` requests per `window_s` seconds.

        The requests admitted lately still count against the new limit, as they would at a provider.
        """
        if limit < 0 or (window_s is not None and not window_s > 0):
            raise ValueError(f"set_rate_limit: limit must be ≥ 0 and window_s > 0, got {limit!r} and {window_s!r}")
        old = self._window
        if not limit:
            self._window = None
            return
        if old is None:
            self._window = SlidingWindow(limit, window_s or self.config.rate_window_s)
        else:
            old.limit = limit
            old.window_s = window_s or old.window_s

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}{BASE_PATH}"

    async def close(self) -> None:
        """Stop listening and drop every connection, stalled ones too."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._connections:
            self._all_lost = asyncio.get_running_loop().create_future()
            for connection in list(self._connections):
                connection.abort()
            await self._all_lost
        await server.wait_closed()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # The Host side of connections.

    def opened(self, connection: Connection) -> None:
        if self._server is None:
            connection.abort()  # accepted just before close(): it must not outlive the server
            return
        self._connections.add(connection)
        self.stats.connections_opened += 1
        self.stats.connections_open += 1

    def lost(self, connection: Connection) -> None:
        if connection not in self._connections:
            return
        self._connections.remove(connection)
        self.stats.connections_open -= 1
        if not self._connections and self._all_lost is not None and not self._all_lost.done():
            self._all_lost.set_result(None)

    def reject(self, error: HttpError) -> Reply:
        self.stats.outcomes["bad_http"] += 1
        return error_reply(error.status, error.message, "invalid_request_error", close=True)

    def reply(self, request: Request) -> Reply:
        """Refusals (404, 405, 401, 400, the rpm limit's 429) go out at once; answers and faults after the latency."""
        outcomes = self.stats.outcomes
        self.stats.paths[request.path] += 1
        route = _ROUTES.get(request.path)
        if route is None:
            outcomes["not_found"] += 1
            return error_reply(
                404, f"Unknown request URL: {request.method} {request.path}.", "invalid_request_error", "unknown_url"
            )
        method, api = route
        if request.method != method:
            outcomes["method_not_allowed"] += 1
            return error_reply(
                405, f"{request.path} accepts {method} only.", "invalid_request_error", headers=(("Allow", method),)
            )
        if self._authorization is not None and not hmac.compare_digest(
            request.authorization or b"", self._authorization
        ):
            outcomes["unauthorized"] += 1
            return error_reply(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if api is None:
            outcomes["ok"] += 1
            return self._models
        try:
            answer = read_completion(api, request.body)
        except BadRequest as error:
            outcomes["bad_request"] += 1
            return error_reply(400, error.message, "invalid_request_error", param=error.param)
        window = self._window
        limit_headers: list[tuple[str, str]] = []
        if window is not None:
            now = self._clock.monotonic()
            wait_s = window.admit(now)
            if wait_s > 0:
                outcomes["rate_limited"] += 1
                return error_reply(
                    429,
                    f"Rate limit reached for {self.config.model}: {window.limit} requests per {_per(window.window_s)}.",
                    "requests",
                    "rate_limit_exceeded",
                    headers=wait_headers(wait_s),
                )
            if self.config.ratelimit_headers:
                limit_headers = ratelimit_headers(window.limit, window.remaining(now), window.reset_s(now))
        fault = self._draw_fault()
        if api == "embeddings" and fault in ANSWER_FAULTS:
            fault = None  # they change an answer's text: a vector has none
        outcomes[fault or "ok"] += 1
        if api != "embeddings" and (fault in ANSWER_FAULTS or self.config.json_answers):
            answer = shaped_answer(answer, self.config.json_answers, fault)
            fault = None if fault in ANSWER_FAULTS else fault
        delay_s = self._draw_delay()
        wall_now = self._clock.time()
        head, body, pieces = answer_parts(answer, f"{_ID_PREFIX[api]}{next(self._ids)}", int(wall_now), limit_headers)
        if pieces is not None and (fault is None or fault in MID_STREAM_FAULTS):
            return stream_reply(fault, head, pieces, self._pace_s, delay_s)
        if fault is None:
            return Reply(head=head, body=body, delay_s=delay_s)
        return fault_reply(fault, self.config, head, body, delay_s, wall_now)


def _per(window_s: float) -> str:
    return "minute" if window_s == 60 else f"{window_s:g} seconds"

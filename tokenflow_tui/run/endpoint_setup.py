"""Where a run sends its requests: the simulator started for the run, the built-in handler and its client.

The runner imports this module only for a job with an [endpoint], and before its event loop starts:
the HTTP stack takes about a fifth of a second to import, which the other commands need not pay
and which would stall a loop that is already running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from ..endpoint.checks import AnswerChecks, response_format
from ..endpoint.openai_handler import HandlerSettings, OpenAIHandler
from ..endpoint.rules import RetryRules
from ..endpoint.transport import make_client
from ..job.model import EndpointSection, Job
from ..sim import SimulatorProcess
from ..traffic import Traffic

if TYPE_CHECKING:
    from .endpoint_pool import Route
    from .unreachable import Unreachable


def base_params(job: Job) -> dict[str, Any]:
    """What the built-in handler merges into every body: [request] params, and with [endpoint] structured
    the [checks] schema as the response_format."""
    params = dict(job.request.params)
    checks = job.checks
    if job.endpoint is not None and job.endpoint.structured and checks is not None and checks.schema is not None:
        params["response_format"] = response_format(checks.schema)
    return params


class RunEndpoint:
    """The job's [endpoint] (or [[endpoints]]) for one run: `start`, then `builtin_handler` (jobs without
    [handler]) or `route_handlers` (with [[endpoints]]), then `close`."""

    def __init__(self, job: Job) -> None:
        if job.endpoint is None:
            raise ValueError("the job has no [endpoint]")
        self._job = job
        self._endpoint = job.endpoint
        self.base_url = self._endpoint.base_url
        self.addresses: dict[str, str] = {}  # with [[endpoints]]: name → address, once started
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def start(self) -> str:
        """The address to send to; with `simulate = true`, the simulator's, once it listens.

        With [[endpoints]], every one's address goes in `addresses` (a simulator started for each
        simulated one) and the first one's is returned.
        """
        if not self._job.endpoints:
            self.base_url = await self._address(self._endpoint)
            return self.base_url
        for named in self._job.endpoints:
            self.addresses[named.name] = await self._address(named.endpoint)
        self.base_url = self.addresses[self._job.endpoints[0].name]
        return self.base_url

    async def _address(self, endpoint: EndpointSection) -> str:
        if endpoint.simulator is not None:  # set exactly when simulate is true
            simulator = SimulatorProcess(endpoint.simulator.to_config())
            await simulator.__aenter__()
            self._closers.append(lambda: simulator.__aexit__(None, None, None))
            return simulator.base_url
        assert endpoint.base_url is not None  # the job file checks: base_url or simulate
        return endpoint.base_url

    def builtin_handler(
        self,
        connections: int,
        api_key: str | None,
        traffic: Traffic,
        on_auth_error: Callable[[int, str], None],
        unreachable: Unreachable,
        on_tokens: Callable[[int], None] | None = None,
    ) -> OpenAIHandler:
        """The OpenAI-compatible handler, with a client for `connections` requests in flight (after `start`).

        `on_tokens(n)` hears of the tokens of streamed answers as they arrive.
        """
        assert self.base_url is not None
        return self._handler(
            self._endpoint,
            self.base_url,
            connections,
            api_key,
            traffic,
            on_auth_error,
            unreachable,
            on_tokens,
        )

    def route_handlers(
        self,
        routes: list[Route],
        connections: int,
        environ: Mapping[str, str],
        refused_key: Callable[[Route, int, str], None],
        on_tokens: Callable[[int], None] | None = None,
    ) -> None:
        """Give each of [[endpoints]] its handler and client, its hooks going to its own traffic and detector."""
        for route in routes:
            endpoint = route.named.endpoint
            key_env = endpoint.api_key_env
            route.handler = self._handler(
                endpoint,
                self.addresses[route.name],
                connections,
                environ.get(key_env) if key_env else None,
                route.traffic,
                partial(refused_key, route),
                route.unreachable,
                on_tokens,
            )

    def _handler(
        self,
        endpoint: EndpointSection,
        base_url: str,
        connections: int,
        api_key: str | None,
        traffic: Traffic,
        on_auth_error: Callable[[int, str], None],
        unreachable: Unreachable,
        on_tokens: Callable[[int], None] | None,
    ) -> OpenAIHandler:
        job = self._job
        client = make_client(endpoint.transport, connections, endpoint.timeout_s)
        self._closers.append(client.aclose)
        params = base_params(job)
        checks, rules = job.checks, job.retry.rules
        settings = HandlerSettings(
            base_url=base_url,
            api=endpoint.api,
            model=endpoint.model,
            params=params,
            timeout_s=endpoint.timeout_s,
            max_attempts=job.retry.max_attempts,
            backoff_base_s=job.retry.backoff_base_s,
            backoff_max_s=job.retry.backoff_max_s,
            stream=endpoint.stream,
            idle_timeout_s=endpoint.idle_timeout_s,
        )
        return OpenAIHandler(
            settings,
            client,
            api_key,
            on_auth_error=on_auth_error,
            on_rate_limit=traffic.on_rate_limit,
            on_headers=traffic.on_headers,
            reached=unreachable.reached,
            unreached=unreachable.unreached,
            on_tokens=on_tokens,
            # compiled once per run; None when the job has none, so answers cost nothing more
            checks=AnswerChecks(checks) if checks is not None else None,
            rules=RetryRules(rules, job.request.params, endpoint.api == "chat") if rules else None,
        )

    async def close(self) -> None:
        """Close the HTTP client and stop the simulator."""
        for close in reversed(self._closers):
            await close()
        self._closers.clear()

"""Several endpoints ([[endpoints]]): each attempt goes to one, by weight and by what its traffic allows now.

Each endpoint has its own handler, traffic control (its limits, the holds after its 429s and its
x-ratelimit headers, its pace) and dead-server detector; the runner's Traffic keeps what is the job's
(the job's [limits], budgets, the adaptive worker count, the storm detector). An endpoint that refuses
its key or cannot be reached is paused alone and the others go on; the job pauses itself only once
every endpoint is paused. Resuming the job retries the paused endpoints.

An attempt whose params name an endpoint under the reserved key `_endpoint` (a retry rule's
`endpoint = "NAME"`, or an input line's own `params`) goes there while it is not paused; the key is
left out of the body sent (openai_handler.request_body).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

from ..engine import ActionContinue, Clock, TokenFlowRequest, TokenFlowRequestTrajectory
from ..job.model import ROUTE_KEY, Job, LimitsSection, NamedEndpoint, routed_to
from ..traffic import Traffic
from ..traffic.waiting import Waiting
from .contract import EndpointView
from .unreachable import Unreachable

RATE_WINDOW_S = 10  # the rate shown is over the last this many whole seconds
LOOK_S = 0.1  # how often an attempt with every endpoint paused looks again (the job pauses meanwhile)

Handler = Callable[[TokenFlowRequestTrajectory], Awaitable[tuple[Any, ...]]]


class _Rate:
    """Events per second over the last whole seconds, in O(1) memory."""

    def __init__(self) -> None:
        self._seconds: deque[list[int]] = deque(maxlen=RATE_WINDOW_S + 1)  # [second, count]

    def add(self, now: float) -> None:
        second = int(now)
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1] += 1
        else:
            self._seconds.append([second, 1])

    def per_s(self, now: float) -> float:
        second = int(now)
        return sum(n for s, n in self._seconds if second - RATE_WINDOW_S <= s < second) / RATE_WINDOW_S


@dataclasses.dataclass(eq=False)
class Route:
    """One endpoint of the run; `handler` is set once the HTTP side is built (endpoint_setup)."""

    named: NamedEndpoint
    traffic: Traffic
    unreachable: Unreachable
    handler: Handler | None = None
    paused: str | None = None  # why, while paused
    current: float = 0.0  # its standing in the smooth weighted round robin
    holds_told: int = 0  # its traffic control's holds the event log has heard of
    rate: _Rate = dataclasses.field(default_factory=_Rate)

    @property
    def name(self) -> str:
        return self.named.name


class EndpointPool:
    """Chooses each attempt's endpoint (`before_attempt`), sends it there (`handler`) and hears its end."""

    def __init__(
        self,
        job: Job,
        *,
        clock: Clock,
        running: Callable[[], bool],
        pause_job: Callable[[str], None],
        note: Callable[[str, str], None],
        spent: Callable[[], tuple[int, int]],
        sending: Callable[[], int],
        sent_at: Callable[[], float | None],
        addresses: Mapping[str, str],
    ) -> None:
        self._clock = clock
        self._running = running
        self._pause_job = pause_job
        self._note = note
        self._waiting = Waiting(clock, running)
        self.routes: list[Route] = []
        for named in job.endpoints:
            # its own limits and its own holds; budgets, the adaptive count and storms are the job's
            own = dataclasses.replace(
                job,
                limits=LimitsSection(named.requests_per_minute, named.tokens_per_minute, pace=job.limits.pace),
                workers=dataclasses.replace(job.workers, adaptive=False),
            )
            traffic = Traffic(
                own,
                job.workers.count,
                clock=clock,
                running=running,
                pause=lambda reason: None,  # the job's Traffic watches for storms over every endpoint
                apply_workers=lambda n: None,
                spent=spent,
                sending=sending,
                sent_at=sent_at,
            )
            unreachable = Unreachable(addresses[named.name], clock, running, partial(self._pause_named, named.name))
            self.routes.append(Route(named, traffic, unreachable))
        self._by_name = {route.name: route for route in self.routes}
        # id(trajectory) → where its attempt goes (and its request), from the gate to its end
        self._sent_to: dict[int, tuple[Route, TokenFlowRequest]] = {}
        # id(trajectory) → the endpoint whose error its next attempt leaves aside
        self._avoid: dict[int, Route] = {}

    # ----- the engine's hooks (through the runner) and the handler ---------------------------

    async def before_attempt(self, request: TokenFlowRequest) -> None:
        """Choose the attempt's endpoint and wait at its gates (its probe after a resume, its traffic)."""
        key = id(request.request_trajectory)
        try:
            await self._gates(request)
        except BaseException:
            self._sent_to.pop(key, None)
            raise

    async def _gates(self, request: TokenFlowRequest) -> None:
        line = request.request_trajectory.last().request_params
        avoid = self._avoid.pop(id(request.request_trajectory), None)
        while (route := self.choose(line, avoid)) is None:
            request.waiting_for = "an endpoint that is not paused"
            await self._waiting.nap(LOOK_S)
        self._sent_to[id(request.request_trajectory)] = (route, request)
        await route.unreachable.gate(request)
        await route.traffic.before_attempt(request)

    async def handler(self, trajectory: TokenFlowRequestTrajectory) -> tuple[Any, ...]:
        """The engine's handler: the attempt goes to the endpoint chosen at the gate; its result names it.

        When its endpoint is judged dead under it (its detector gives the attempt back by cancelling it)
        while the job runs on, the attempt goes to another endpoint, unspent, instead of ending its worker.
        """
        while True:
            route, request = self._sent_to[id(trajectory)]
            assert route.handler is not None
            try:
                outcome = await route.handler(trajectory)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                cancelled = task is not None and task.cancelling() > 0  # a hard stop, the host's cancel
                if cancelled or route.paused is None or not self._running():
                    cut = trajectory.last().result  # a stream cut by a hard stop keeps its part
                    if type(cut) is dict:
                        cut["endpoint"] = route.name
                    raise
                await self._gates(request)
                continue
            result = outcome[1] if len(outcome) >= 2 else None
            if type(result) is dict:
                result["endpoint"] = route.name
                if type(outcome[0]) is ActionContinue and "error" in result:
                    return self._retry_elsewhere(trajectory, route, outcome)
            return outcome

    def _retry_elsewhere(
        self, trajectory: TokenFlowRequestTrajectory, route: Route, outcome: tuple[Any, ...]
    ) -> tuple[Any, ...]:
        """A failed attempt's retry goes to another endpoint when one can take it now, and at once: the
        backoff and the Retry-After were this endpoint's (a retry that names its endpoint keeps both)."""
        action = outcome[0]
        if routed_to(action.continue_params) is not None:
            return outcome
        if not any(r is not route and r.paused is None and r.traffic.free_now() for r in self.routes):
            return outcome
        self._avoid[id(trajectory)] = route
        return (ActionContinue(action.continue_params, 0.0), *outcome[1:])

    def attempt_ended(self, request: TokenFlowRequest) -> None:
        """An attempt that passed `before_attempt` ended (or was given back): its endpoint hears of it."""
        trajectory = request.request_trajectory
        sent = self._sent_to.pop(id(trajectory), None)
        if sent is None:
            return
        route = sent[0]
        route.traffic.attempt_ended(trajectory)
        route.unreachable.attempt_ended()
        if trajectory.last().action is not None:  # a given-back attempt tells nothing
            route.rate.add(self._clock.monotonic())

    # ----- choosing, pausing ------------------------------------------------------------------

    def choose(self, line: Any, avoid: Route | None = None) -> Route | None:
        """The endpoint the params name when it is not paused; else by weight among those not paused (not
        `avoid` while there are others), preferring those whose traffic lets the attempt go now. None while
        every endpoint is paused."""
        name = routed_to(line)
        if name is not None:
            named = self._by_name.get(name)
            if named is None:
                names = ", ".join(f'"{route.name}"' for route in self.routes)
                raise ValueError(f'no endpoint is named "{name}" (the params\' {ROUTE_KEY}); the endpoints: {names}')
            if named.paused is None:
                return named
        routes = [r for r in self.routes if r.paused is None and not r.unreachable.probe_out]
        if avoid is not None and len(routes) > 1:
            routes = [r for r in routes if r is not avoid]
        if len(routes) > 1:
            routes = [r for r in routes if r.traffic.free_now()] or routes
        return _smooth_weighted(routes) if routes else None

    def pause_endpoint(self, route: Route, reason: str) -> None:
        """Pause one endpoint, saying why; once none is left, the job pauses itself."""
        if route.paused is not None:
            return
        route.paused = reason
        self._note("endpoint", f"endpoint {route.name} paused: {reason}")
        if all(r.paused is not None for r in self.routes):
            why = "; ".join(f"{r.name}: {r.paused}" for r in self.routes)
            self._pause_job(f"every endpoint is paused ({why})")

    def _pause_named(self, name: str, reason: str) -> None:
        self.pause_endpoint(self._by_name[name], reason)

    def refused_key(self, route: Route, status_code: int, message: str) -> None:
        """The endpoint's server refused its key (401, 403): it pauses; the request goes on elsewhere."""
        variable = route.named.endpoint.api_key_env
        hint = f"check the key in ${variable}" if variable else "check the endpoint's key"
        self.pause_endpoint(route, f"the server refused the key ({status_code}: {message}); {hint}, then resume")

    def resumed(self) -> None:
        """The job runs again: the paused endpoints are tried again (the dead ones with one probe first)."""
        for route in self.routes:
            route.traffic.resumed()
            route.unreachable.resumed()
            if route.paused is not None:
                route.paused = None
                self._note("endpoint", f"endpoint {route.name} resumed")

    def reset(self) -> None:
        """Forget what each endpoint's traffic control learnt from its server (the dashboard's reset)."""
        for route in self.routes:
            route.traffic.reset()

    def views(self, counts: Mapping[str, Sequence[int]]) -> tuple[EndpointView, ...]:
        """Each endpoint as the dashboard shows it; `counts`: name → (attempts, errors, done) from the records.

        A hold of an endpoint's dispatch seen since the last call goes to the event log (as the job's holds do).
        """
        now = self._clock.monotonic()
        views = []
        for route in self.routes:
            traffic = route.traffic.view()
            if traffic.holds > route.holds_told:
                route.holds_told = traffic.holds
                self._note("hold", f"endpoint {route.name}: dispatch held: {traffic.held_because or 'no reason given'}")
            reason: str | None
            if route.paused is not None:
                state, reason = "paused", route.paused
            elif traffic.held_s > 0:
                state, reason = "held", traffic.held_because
            else:
                state, reason = "sending", None
            attempts, errors, done = counts.get(route.name, (0, 0, 0))
            views.append(
                EndpointView(
                    name=route.name,
                    state=state,
                    reason=reason,
                    weight=route.named.weight,
                    attempts=attempts,
                    errors=errors,
                    done=done,
                    rate_per_s=route.rate.per_s(now),
                    requests_per_minute=traffic.requests_per_minute,
                    tokens_per_minute=traffic.tokens_per_minute,
                    pace_per_minute=traffic.pace_per_minute,
                )
            )
        return tuple(views)


def _smooth_weighted(routes: list[Route]) -> Route:
    """Smooth weighted round robin: over any stretch, each gets its share of picks within one."""
    total = 0.0
    best = routes[0]
    for route in routes:
        route.current += route.named.weight
        total += route.named.weight
        if route.current > best.current:
            best = route
    best.current -= total
    return best

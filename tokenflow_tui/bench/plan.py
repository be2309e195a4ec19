"""What `tokenflow bench` measures: the engine's size, the HTTP points and streamed requests, full or quick."""

from __future__ import annotations

from dataclasses import dataclass, replace

ENGINE_WORKERS = 64
STREAM_IN_FLIGHT = 64  # streamed requests go against the simulator at 0 ms: the client's cost per token shows
MAX_LATENCY_MS = 60_000


@dataclass(frozen=True, slots=True)
class Point:
    in_flight: int  # the job's workers, and the yardstick's concurrent requests
    latency_ms: float  # of the simulator
    requests: int


@dataclass(frozen=True, slots=True)
class Plan:
    engine_requests: int
    points: tuple[Point, ...]
    repeat: int
    stream_requests: int  # streamed requests (64 tokens an answer) per measured run


FULL = Plan(
    engine_requests=1_000_000,
    points=(Point(64, 0, 20_000), Point(256, 50, 20_000), Point(1000, 200, 30_000)),
    repeat=1,
    stream_requests=10_000,
)
QUICK = Plan(
    engine_requests=200_000,
    points=(Point(64, 0, 3_000), Point(256, 50, 4_000), Point(1000, 200, 6_000)),
    repeat=1,
    stream_requests=2_000,
)


def parse_points(text: str) -> tuple[tuple[int, float], ...]:
    """`64@0,256@50`: (in flight, simulator latency in ms) pairs; ValueError with a sentence."""
    points = []
    for item in text.split(","):
        in_flight, at, latency = item.strip().partition("@")
        try:
            point = (int(in_flight), float(latency))
        except ValueError:
            point = None
        if not at or point is None or point[0] < 1 or not 0 <= point[1] <= MAX_LATENCY_MS:
            raise ValueError(
                f"{item.strip()!r} is not IN_FLIGHT@LATENCY_MS (for example 256@50): in flight "
                f"a whole number of at least 1, latency from 0 to {MAX_LATENCY_MS:g} ms"
            )
        points.append(point)
    return tuple(points)


def make_plan(
    quick: bool,
    requests: int | None = None,
    engine_requests: int | None = None,
    repeat: int | None = None,
    points: tuple[tuple[int, float], ...] | None = None,
) -> Plan:
    """The full or quick plan, with what was given on the command line instead of its own.

    Points given without a request count get the largest of the plan's.
    """
    plan = QUICK if quick else FULL
    if points is not None:
        size = max(point.requests for point in plan.points)
        plan = replace(plan, points=tuple(Point(in_flight, latency, size) for in_flight, latency in points))
    if requests is not None:
        sized = tuple(replace(point, requests=requests) for point in plan.points)
        plan = replace(plan, points=sized, stream_requests=requests)
    if engine_requests is not None:
        plan = replace(plan, engine_requests=engine_requests)
    if repeat is not None:
        plan = replace(plan, repeat=repeat)
    return plan

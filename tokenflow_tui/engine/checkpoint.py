"""Requests to and from plain data (dicts, lists, str, int, float, bool, None) for checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .actions import ActionContinue, ActionDone, TokenFlowAction
from .stats import LatencyHistogram
from .trajectory import TokenFlowRequest, TokenFlowRequestTrajectory, TokenFlowRequestTrajectoryElement


@dataclass(frozen=True, slots=True)
class Restored:
    """A checkpoint's progress, read: what a task restored from it carries on from."""

    consumed: int  # requests taken from the input
    input_exhausted: bool
    pending: list[TokenFlowRequest]  # taken, not finished, in the order to run them
    done: int
    failed: int
    attempts: int
    retries: int
    elapsed_s: float
    latency: LatencyHistogram
    target_workers: int


def action_to_data(action: TokenFlowAction | None) -> dict[str, Any] | None:
    if action is None:
        return None
    if isinstance(action, ActionDone):
        return {"type": "done"}
    return {"type": "continue", "continue_params": action.continue_params, "delay_s": action.delay_s}


def action_from_data(data: dict[str, Any] | None) -> TokenFlowAction | None:
    if data is None:
        return None
    if data["type"] == "done":
        return ActionDone()
    return ActionContinue(data["continue_params"], float(data.get("delay_s", 0.0)))


def request_to_data(request: TokenFlowRequest, in_flight: bool = False) -> dict[str, Any]:
    """A request as plain data; the attempt of a request `in_flight` is stored as not yet made."""
    elements = request.request_trajectory.trajectory
    data = [
        {
            "request_params": e.request_params,
            "result": e.result,
            "action": action_to_data(e.action),
            "started_at": e.started_at,
            "latency_s": e.latency_s,
            "payload": e.payload,
        }
        for e in elements
    ]
    if in_flight:
        data[-1] = {
            "request_params": elements[-1].request_params,
            "result": None,
            "action": None,
            "started_at": None,
            "latency_s": None,
            "payload": None,
        }
    return {"id": request.id, "trajectory": data}


def request_from_data(data: dict[str, Any]) -> TokenFlowRequest:
    elements = [
        TokenFlowRequestTrajectoryElement(
            e["request_params"],
            e.get("result"),
            action_from_data(e.get("action")),
            e.get("started_at"),
            e.get("latency_s"),
            e.get("payload"),
        )
        for e in data["trajectory"]
    ]
    return TokenFlowRequest(data["id"], TokenFlowRequestTrajectory(elements))

"""A request and its trajectory: one element per attempt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .actions import ActionContinue, ActionDone, TokenFlowAction


@dataclass(slots=True)
class TokenFlowRequestTrajectoryElement:
    """One attempt: the params it was made with, its result, what the handler decided next."""

    request_params: Any
    result: Any = None
    action: TokenFlowAction | None = None
    started_at: float | None = None  # wall-clock seconds since the epoch
    latency_s: float | None = None
    payload: Any = None  # the handler's third return value, when it gave one (see `payload.py`)


@dataclass(slots=True)
class TokenFlowRequestTrajectory:
    trajectory: list[TokenFlowRequestTrajectoryElement] = field(default_factory=list)

    def empty(self) -> bool:
        return not self.trajectory

    def first(self) -> TokenFlowRequestTrajectoryElement:
        return self.trajectory[0]

    def last(self) -> TokenFlowRequestTrajectoryElement:
        return self.trajectory[-1]

    def length(self) -> int:
        return len(self.trajectory)

    def add(self, element: TokenFlowRequestTrajectoryElement) -> None:
        self.trajectory.append(element)

    def mark_last_done(self, result: Any) -> None:
        last = self.trajectory[-1]
        last.result = result
        last.action = ActionDone()

    def mark_last_continue(self, result: Any, continue_params: Any) -> None:
        last = self.trajectory[-1]
        last.result = result
        last.action = ActionContinue(continue_params)

    def snapshot(self) -> TokenFlowRequestTrajectory:
        """A copy that later attempts do not change (elements are finished, so a shallow copy)."""
        return TokenFlowRequestTrajectory(list(self.trajectory))


@dataclass(slots=True)
class TokenFlowRequest:
    id: Any
    request_trajectory: TokenFlowRequestTrajectory
    # when the task took it: its place in the task's input (a hard stop requeues by it)
    seq: int = field(default=0, compare=False, repr=False)
    # what its next attempt waits for while `before_attempt` holds it back (set by that hook)
    waiting_for: str | None = field(default=None, compare=False, repr=False)
    # the error kind when the task itself ended the request as failed (too_many_attempts)
    failure: str | None = field(default=None, compare=False)


def new_request(request_id: Any, params: Any, seq: int = 0) -> TokenFlowRequest:
    return TokenFlowRequest(request_id, TokenFlowRequestTrajectory([TokenFlowRequestTrajectoryElement(params)]), seq)

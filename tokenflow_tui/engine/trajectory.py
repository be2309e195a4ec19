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


class TokenFlowRequestTrajectory:
    """The attempts of a request, first to last: `trajectory` is their list.

    A trajectory made with `only=` holds its one attempt without a list until `trajectory` is asked
    for (then it makes the list and keeps it): a list of a million finished requests of one attempt
    each holds a million lists fewer, each 64 bytes and one more object for the garbage collector.
    The methods below answer without making it.
    """

    __slots__ = ("_only", "_list")
    __match_args__ = ("trajectory",)
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __init__(
        self,
        trajectory: list[TokenFlowRequestTrajectoryElement] | None = None,
        *,
        only: TokenFlowRequestTrajectoryElement | None = None,
    ) -> None:
        if only is not None and trajectory is not None:
            raise ValueError("TokenFlowRequestTrajectory: give trajectory or only, not both")
        self._only = only
        self._list = ([] if only is None else None) if trajectory is None else trajectory

    @property
    def trajectory(self) -> list[TokenFlowRequestTrajectoryElement]:
        elements = self._list
        if elements is None:
            elements = self._list = [self._only]  # type: ignore[list-item]
            self._only = None
        return elements

    @trajectory.setter
    def trajectory(self, elements: list[TokenFlowRequestTrajectoryElement]) -> None:
        self._list, self._only = elements, None

    def empty(self) -> bool:
        return self._list is not None and not self._list

    def first(self) -> TokenFlowRequestTrajectoryElement:
        elements = self._list
        return self._only if elements is None else elements[0]  # type: ignore[return-value]

    def last(self) -> TokenFlowRequestTrajectoryElement:
        elements = self._list
        return self._only if elements is None else elements[-1]  # type: ignore[return-value]

    def length(self) -> int:
        elements = self._list
        return 1 if elements is None else len(elements)

    def add(self, element: TokenFlowRequestTrajectoryElement) -> None:
        self.trajectory.append(element)

    def mark_last_done(self, result: Any) -> None:
        last = self.last()
        last.result = result
        last.action = ActionDone()

    def mark_last_continue(self, result: Any, continue_params: Any) -> None:
        last = self.last()
        last.result = result
        last.action = ActionContinue(continue_params)

    def snapshot(self) -> TokenFlowRequestTrajectory:
        """A copy that later attempts do not change (elements are finished, so a shallow copy)."""
        if self._list is None:
            return TokenFlowRequestTrajectory(only=self._only)
        return TokenFlowRequestTrajectory(list(self._list))

    def _elements(self) -> list[TokenFlowRequestTrajectoryElement]:
        """The attempts, as a list (a new one when none is kept)."""
        elements = self._list
        return [self._only] if elements is None else elements  # type: ignore[list-item]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, TokenFlowRequestTrajectory)
        return self._elements() == other._elements()

    def __repr__(self) -> str:
        return f"TokenFlowRequestTrajectory(trajectory={self._elements()!r})"


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


_make = object.__new__


def new_request(request_id: Any, params: Any, seq: int = 0) -> TokenFlowRequest:
    """A request of one attempt yet to run."""
    return new_attempt(request_id, params, seq)[0]


def new_attempt(
    request_id: Any, params: Any, seq: int
) -> tuple[TokenFlowRequest, TokenFlowRequestTrajectory, TokenFlowRequestTrajectoryElement]:
    """A new request with its trajectory and the element of its first attempt, as the constructors make them.

    They are made and filled here, not by their `__init__`: every request of a job is made this way,
    and on Python 3.11 calling a class with a Python `__init__` costs about twice as much.
    """
    element = _make(TokenFlowRequestTrajectoryElement)
    element.request_params = params
    element.result = element.action = element.started_at = element.latency_s = element.payload = None
    trajectory = _make(TokenFlowRequestTrajectory)
    trajectory._only = element
    trajectory._list = None
    request = _make(TokenFlowRequest)
    request.id = request_id
    request.request_trajectory = trajectory
    request.seq = seq
    request.waiting_for = request.failure = None
    return request, trajectory, element

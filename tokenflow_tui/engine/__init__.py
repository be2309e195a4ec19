"""The TokenFlow core: tasks, trajectories, workers, events and statistics.

It imports no UI, no HTTP client and no file format.
"""

from .actions import ActionContinue, ActionDone, TokenFlowAction
from .clock import Clock, ManualClock, SystemClock
from .events import (
    TokenFlowCancelledEvent,
    TokenFlowContinueEvent,
    TokenFlowDoneEvent,
    TokenFlowEvent,
    TokenFlowUserExceptionEvent,
    UnexpectedUserException,
)
from .stats import StatsSnapshot
from .task import TokenFlowTask
from .trajectory import TokenFlowRequest, TokenFlowRequestTrajectory, TokenFlowRequestTrajectoryElement

__all__ = [
    "ActionContinue",
    "ActionDone",
    "Clock",
    "ManualClock",
    "StatsSnapshot",
    "SystemClock",
    "TokenFlowAction",
    "TokenFlowCancelledEvent",
    "TokenFlowContinueEvent",
    "TokenFlowDoneEvent",
    "TokenFlowEvent",
    "TokenFlowRequest",
    "TokenFlowRequestTrajectory",
    "TokenFlowRequestTrajectoryElement",
    "TokenFlowTask",
    "TokenFlowUserExceptionEvent",
    "UnexpectedUserException",
]

"""What a handler tells the engine to do with a request after an attempt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class ActionDone:
    """The request is finished; the attempt's result is its final result."""


@dataclass(frozen=True, slots=True)
class ActionContinue:
    """Record this attempt and try again with `continue_params`, after `delay_s` seconds."""

    continue_params: Any
    delay_s: float = 0.0


TokenFlowAction: TypeAlias = ActionDone | ActionContinue

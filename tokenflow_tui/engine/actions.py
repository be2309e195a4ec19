"""What a handler tells the engine to do with a request after an attempt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class ActionDone:
    """The request is finished; the attempt's result is its final result.

    It holds nothing, so every `ActionDone()` is one shared instance: a kept result list of millions
    holds no copy of it per request (nor one more object per request for the garbage collector).
    """

    def __new__(cls) -> ActionDone:
        if cls is ActionDone:
            return _DONE
        return object.__new__(cls)


@dataclass(frozen=True, slots=True)
class ActionContinue:
    """Record this attempt and try again with `continue_params`, after `delay_s` seconds."""

    continue_params: Any
    delay_s: float = 0.0


_DONE: ActionDone = object.__new__(ActionDone)

TokenFlowAction: TypeAlias = ActionDone | ActionContinue

"""What a handler tells the engine to do with a request after an attempt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

# each class of ActionDone to its one instance (see ActionDone)
_INSTANCES: dict[type, Any] = {}


class ActionDone:
    """The request is finished; the attempt's result is its final result.

    It holds nothing, so every `ActionDone()` is one shared instance: a kept result list of millions
    holds no copy of it per request (nor one more object per request for the garbage collector). A
    handler makes one per request, so making it runs no Python code: `__new__` is a dict's `get`
    (the class to its instance) and `__init__` is object's.
    """

    __slots__ = ()
    if TYPE_CHECKING:

        def __new__(cls) -> ActionDone: ...

    else:
        __new__ = staticmethod(_INSTANCES.get)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _INSTANCES[cls] = object.__new__(cls)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) if isinstance(other, ActionDone) else NotImplemented

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}()"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __reduce__(self) -> tuple[type[ActionDone], tuple[()]]:
        return type(self), ()


@dataclass(frozen=True, slots=True)
class ActionContinue:
    """Record this attempt and try again with `continue_params`, after `delay_s` seconds."""

    continue_params: Any
    delay_s: float = 0.0


_INSTANCES[ActionDone] = object.__new__(ActionDone)

TokenFlowAction: TypeAlias = ActionDone | ActionContinue

"""The control socket's messages: one JSON object a line, the contract's dataclasses read back by their type hints.

The job's side writes a snapshot with orjson's own dataclass encoding (in C, so serving costs the job's loop
little); the reading side rebuilds the dataclasses from their fields' type hints, so that a field added to
the contract needs no change here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import orjson

from .contract import RequestRow, RunSnapshot, SaveReport

# a message is far smaller; this bounds what a broken peer can make the reader hold
MAX_LINE = 64 * 1024 * 1024
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


class WireError(Exception):
    """A message that cannot be read: the peer is not a tokenflow control socket, or a broken one."""


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as a line; values JSON does not know (a user handler's objects in a trajectory) as text."""
    return orjson.dumps(message, default=str, option=_OPTIONS)


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise WireError(f"not a control message ({error})") from None
    if not isinstance(message, dict):
        raise WireError("not a control message (not an object)")
    return message


def build(kind: Any, data: Any) -> Any:
    """`data` read from JSON as a value of type `kind` (a dataclass, a list or mapping of them, a plain value)."""
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(data, dict):
            raise WireError(f"{kind.__name__}: expected an object, got {type(data).__name__}")
        hints = _hints(kind)
        return kind(**{name: build(hints[name], value) for name, value in data.items() if name in hints})
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return build(inner[0], data) if len(inner) == 1 else data
    if origin in (list, Sequence) and isinstance(data, list):
        (item,) = typing.get_args(kind) or (Any,)
        return [build(item, value) for value in data]
    if origin is tuple and isinstance(data, list):
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(build(args[0], value) for value in data)
        return tuple(build(arg, value) for arg, value in zip(args, data))
    if origin in (dict, Mapping) and isinstance(data, dict):
        _, value_kind = typing.get_args(kind) or (Any, Any)
        return {key: build(value_kind, value) for key, value in data.items()}
    return data


@cache
def _hints(kind: type) -> dict[str, Any]:
    hints = typing.get_type_hints(kind)
    return {field.name: hints[field.name] for field in dataclasses.fields(kind)}


# what each call answers, when it is more than plain JSON
RETURNS: dict[str, Any] = {
    "snapshot": RunSnapshot,
    "rows": list[RequestRow],
    "save": SaveReport,
}

"""The control socket's messages: one JSON object a line, the contract's dataclasses read back by their type hints.

The job's side writes a snapshot with orjson's own dataclass encoding (in C, so serving costs the job's loop
little); the reading side rebuilds the dataclasses from their fields' type hints, so that a field added to
the contract needs no change here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import orjson

from .contract import RequestRow, RunSnapshot, SaveReport, SearchStatus, SortStatus

# a message is far smaller; this bounds what a broken peer can make the reader hold
MAX_LINE = 64 * 1024 * 1024


class WireError(Exception):
    """A message that cannot be read: the peer is not a tokenflow control socket, or a broken one."""


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as a line; values JSON does not know (a user handler's objects in a trajectory) as text."""
    try:
        return orjson.dumps(message, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # a key that is not a string (a handler's result): a third slower, so only then
        return orjson.dumps(message, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)


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
    return _builder(kind)(data)


def _same(data: Any) -> Any:
    return data


@cache
def _builder(kind: Any) -> Callable[[Any], Any]:
    """What turns JSON into a value of `kind`, worked out once per type: a snapshot has hundreds of chart points."""
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return _dataclass_builder(kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) != 1 or _builder(inner[0]) is _same:
            return _same
        one = _builder(inner[0])
        return lambda data: None if data is None else one(data)
    if origin in (list, Sequence) and args and _builder(args[0]) is not _same:
        item = _builder(args[0])
        return lambda data: [item(value) for value in data] if isinstance(data, list) else data
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _builder(args[0])
        return lambda data: tuple(item(value) for value in data) if isinstance(data, list) else data
    if origin in (dict, Mapping) and len(args) == 2 and _builder(args[1]) is not _same:
        value_of = _builder(args[1])
        return lambda data: {key: value_of(value) for key, value in data.items()} if isinstance(data, dict) else data
    return _same


def _dataclass_builder(kind: type) -> Callable[[Any], Any]:
    hints = typing.get_type_hints(kind)
    fields = {field.name: _builder(hints[field.name]) for field in dataclasses.fields(kind)}
    nested = {name: make for name, make in fields.items() if make is not _same}

    def make(data: Any) -> Any:
        if not isinstance(data, dict):
            raise WireError(f"{kind.__name__}: expected an object, got {type(data).__name__}")
        values = {name: value for name, value in data.items() if name in fields}  # a newer peer's extra fields
        for name, nested_make in nested.items():
            if name in values:
                values[name] = nested_make(values[name])
        return kind(**values)

    return make


# what each call answers, when it is more than plain JSON
RETURNS: dict[str, Any] = {
    "snapshot": RunSnapshot,
    "rows": list[RequestRow],
    "save": SaveReport,
    "sort_status": SortStatus,
    "search": SearchStatus,
    "search_status": SearchStatus,
}

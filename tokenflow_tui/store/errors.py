"""Errors of the store, and the sentences that say why the OS or tomllib refused a file."""

from __future__ import annotations

import errno
import importlib
import re
from types import ModuleType

_TOML_PLACE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")


class StoreError(Exception):
    """A results or state file cannot be read or written; the message is a sentence for the user."""


class MissingExtra(StoreError):
    """An optional library is not installed; the message names the extra that brings it."""


def import_extra(module: str, extra: str, needed_for: str) -> ModuleType:
    """`module`, imported only now (the heavy libraries are optional), or MissingExtra naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.partition(".")[0]
        raise MissingExtra(
            f"{needed_for} needs {top}, which is not installed: pip install 'tokenflow-tui[{extra}]'"
        ) from None


def os_reason(error: OSError) -> str:
    """Why the OS refused a file, as the end of a sentence: "no such file or directory", "the disk is full"."""
    if error.errno == errno.ENOSPC:
        return "the disk is full"
    reason = error.strerror or str(error)
    return reason[:1].lower() + reason[1:]


def toml_error_place(message: str, text: str) -> tuple[str, int | None, int | None]:
    """A tomllib error message without its position, and the line and column it names (1-based)."""
    place = _TOML_PLACE.search(message)
    if place:
        return message[: place.start()], int(place[1]), int(place[2])
    end = _TOML_END.search(message)
    if end:
        lines = text.split("\n")
        return message[: end.start()], len(lines), len(lines[-1]) + 1
    return message, None, None

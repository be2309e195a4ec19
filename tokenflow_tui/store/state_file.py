"""state.toml: the checkpoint of a run, replaced atomically so a crash leaves the old one or the new one."""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from .errors import StoreError, os_reason, toml_error_place
from .files import fsync_directory

STATE_FILE = "state.toml"


def write_state(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Replace the file with `data` as TOML: temporary file, fsync, rename, fsync of the directory.

    TOML has no null: `data` must not hold None anywhere (leave the key out instead); a None
    raises ValueError naming its key.
    """
    path = Path(path)
    _refuse_none(data, "")
    text = tomli_w.dumps(data).encode()
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "wb") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as e:
        Path(temp).unlink(missing_ok=True)
        raise StoreError(f"{path}: cannot save the state ({os_reason(e)}); the previous state is unchanged.") from None
    try:
        fsync_directory(path.parent)
    except OSError as e:
        raise StoreError(f"{path}: saved, but its directory cannot be synced ({os_reason(e)}).") from None


def read_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state, or None when there is no file; StoreError when it is not readable TOML."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StoreError(f"{path}: cannot read ({os_reason(e)}).") from None
    try:
        return tomllib.loads(text.decode())
    except UnicodeDecodeError as e:
        raise StoreError(f"{path}: damaged state (not UTF-8 text at byte {e.start}).") from None
    except tomllib.TOMLDecodeError as e:
        message, line, column = toml_error_place(str(e), text.decode())
        where = f"{path}:{line}:{column}" if line is not None else str(path)
        raise StoreError(f"{where}: damaged state ({message}).") from None


def _refuse_none(value: Any, where: str) -> None:
    if value is None:
        raise ValueError(f"state.toml cannot hold None (at {where or 'the top'}): TOML has no null; leave the key out")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_none(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for number, item in enumerate(value):
            _refuse_none(item, f"{where}[{number}]")

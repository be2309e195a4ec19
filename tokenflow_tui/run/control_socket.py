"""Where a run's control socket lives: OUTPUT/control.sock, or a short path elsewhere when that one is too long.

A Unix socket's path has room for 107 bytes. The run writes OUTPUT/control.json (the socket's path, the job file
and how to resume it) either way, so that `attach` finds the socket wherever it is.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

import orjson

SOCKET_FILE = "control.sock"
INFO_FILE = "control.json"
_MAX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


class ControlSocketError(Exception):
    """The control socket cannot be set up or reached; the message is a sentence."""


def socket_path(output_dir: Path) -> Path:
    """OUTPUT/control.sock when its path fits a Unix socket, else one named after OUTPUT in a private folder."""
    here = output_dir.resolve() / SOCKET_FILE
    if len(os.fsencode(here)) <= _MAX_PATH:
        return here
    name = hashlib.sha256(os.fsencode(output_dir.resolve())).hexdigest()[:20] + ".sock"
    for base in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp"):
        if base and os.path.isdir(base):
            folder = Path(base) / f"tokenflow-{os.getuid()}"
            if _private_folder(folder) and len(os.fsencode(folder / name)) <= _MAX_PATH:
                return folder / name
    raise ControlSocketError(f"{output_dir}: no short private folder for the control socket ($XDG_RUNTIME_DIR, /tmp)")


def _private_folder(folder: Path) -> bool:
    """`folder` exists (made now if not), is ours, not a link, and only we may enter it."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700


def bind(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, mode 0600; a stale one left by a killed run is replaced, a live one refused."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ControlSocketError(f"{path}: exists and is not a socket; remove it to let the run listen there")
        if _answers(path):
            raise ControlSocketError(f"{path}: another run listens on this control socket")
        path.unlink()  # nobody listens: a run killed before it could remove it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # the umask makes the file 0600 from the start: a chmod after bind would leave a moment open to others
    mask = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    except OSError as error:
        sock.close()
        raise ControlSocketError(f"{path}: cannot listen ({error.strerror})") from None
    finally:
        os.umask(mask)
    sock.listen(16)
    sock.setblocking(False)
    return sock


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(os.fspath(path))
        return True
    except OSError as error:
        if error.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise ControlSocketError(f"{path}: cannot tell whether a run listens there ({error.strerror})") from None
    finally:
        probe.close()


def write_info(output_dir: Path, info: dict[str, Any]) -> None:
    """OUTPUT/control.json, written whole (a reader never sees half of it)."""
    target = output_dir / INFO_FILE
    part = target.with_name(INFO_FILE + ".part")
    try:
        part.write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        os.replace(part, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            part.unlink()
        raise ControlSocketError(f"{target}: cannot write ({error.strerror})") from None


def read_info(output_dir: Path) -> dict[str, Any] | None:
    """What OUTPUT/control.json says, or None when no run wrote one (or it cannot be read)."""
    try:
        info = orjson.loads((output_dir / INFO_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None

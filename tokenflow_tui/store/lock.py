"""One writer per output directory: an flock on OUTPUT/.lock, released by the kernel when the holder dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from .errors import StoreError, os_reason

LOCK_FILE = ".lock"


class LockedError(StoreError):
    """Another process holds the output directory."""


class OutputLock:
    """Holds OUTPUT/.lock (which says the holder's pid) until `close` or the end of the process."""

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.path = Path(output_dir) / LOCK_FILE
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot open ({os_reason(e)}).") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise LockedError(f"{output_dir} is in use by another tokenflow run (pid {holder}).") from None
        # the file stays (removing it would let two processes lock two different files)
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            self.close()
            raise StoreError(f"{self.path}: cannot write ({os_reason(e)}).") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = -1

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

"""Where each key of a TOML document is written, for problems tomllib cannot place (a wrong value).

The document has already been parsed by tomllib, so this scanner only has to find keys: it reads
headers (`[a.b]`, `[[a]]`), `key = value` lines with dotted and quoted keys, and the keys inside
inline tables and arrays, and skips over strings so that text inside them is never taken for a key.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from collections.abc import Callable

KeyPath = tuple[str | int, ...]
Position = tuple[int, int]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})?)?")
_SCALAR = re.compile(r"[^\s,\]}#]+")


class KeyPositions:
    """The line and column (1-based) where each key path of a TOML text is first written."""

    def __init__(self, text: str) -> None:
        scanner = _Scanner(text)
        scanner.document()
        self._written = scanner.written
        self._implied = scanner.implied

    def find(self, path: KeyPath) -> Position | None:
        """Where `path` is written, or where its table is implied by a longer header; None if nowhere."""
        return self._written.get(path) or self._implied.get(path)

    def nearest(self, path: KeyPath) -> Position | None:
        """Where `path` is written, else where its closest enclosing table is; None at the top level."""
        for end in range(len(path), 0, -1):
            found = self.find(path[:end])
            if found is not None:
                return found
        return None


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.written: dict[KeyPath, Position] = {}
        self.implied: dict[KeyPath, Position] = {}  # parents of a header, e.g. [a] of [a.b]
        self.last_index: dict[KeyPath, int] = {}  # the current element of each array of tables

    def position(self, offset: int) -> Position:
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.i >= len(self.text):
                return
            start = self.i
            if self.text.startswith("[[", start):
                self.i += 2
                parts = self.key()
                parent = self.resolve(tuple(name for name, _ in parts[:-1]))
                array = parent + tuple(name for name, _ in parts[-1:])
                index = self.last_index.get(array, -1) + 1
                self.last_index[array] = index
                table = array + (index,)
                self.header(table, start)
            elif self.text[start] == "[":
                self.i += 1
                table = self.resolve(tuple(name for name, _ in self.key()))
                self.header(table, start)
            else:
                self.key_value(table)
            self.skip_line()

    def resolve(self, names: tuple[str, ...]) -> KeyPath:
        """The path of a header's keys, entering the current element of any array of tables."""
        path: KeyPath = ()
        for name in names:
            path += (name,)
            if path in self.last_index:
                path += (self.last_index[path],)
        return path

    def header(self, table: KeyPath, start: int) -> None:
        where = self.position(start)
        self.written.setdefault(table, where)
        for end in range(1, len(table)):
            self.implied.setdefault(table[:end], where)

    def key_value(self, table: KeyPath) -> None:
        path = table
        parts = self.key()
        if not parts:
            return
        for name, offset in parts:
            path += (name,)
            self.written.setdefault(path, self.position(offset))
        self.skip_blank()
        if self.text.startswith("=", self.i):
            self.i += 1
            self.skip_blank()
            self.value(path)

    def key(self) -> list[tuple[str, int]]:
        """A dotted key's parts with their offsets; stops at the first thing that is not a key."""
        parts: list[tuple[str, int]] = []
        while True:
            self.skip_blank()
            start = self.i
            if self.text.startswith(('"', "'"), start):
                self.string()
                raw = self.text[start : self.i]
                try:
                    name = next(iter(tomllib.loads(f"{raw} = 0")))
                except (tomllib.TOMLDecodeError, StopIteration):
                    return parts
            else:
                match = _BARE_KEY.match(self.text, start)
                if match is None:
                    return parts
                name = match.group()
                self.i = match.end()
            parts.append((name, start))
            self.skip_blank()
            if not self.text.startswith(".", self.i):
                return parts
            self.i += 1

    def value(self, path: KeyPath) -> None:
        text, start = self.text, self.i
        if text.startswith(('"', "'"), start):
            self.string()
        elif text.startswith("[", start):
            self.i += 1
            self.items("]", lambda index: self.element(path + (index,)))
        elif text.startswith("{", start):
            self.i += 1
            self.items("}", lambda index: self.key_value(path))
        else:
            match = _DATETIME.match(text, start) or _SCALAR.match(text, start)
            self.i = match.end() if match else start + 1

    def element(self, path: KeyPath) -> None:
        self.written.setdefault(path, self.position(self.i))
        self.value(path)

    def items(self, close: str, item: Callable[[int], None]) -> None:
        """The comma-separated items of an array or an inline table, up to `close`."""
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.i >= len(self.text):
                return
            if self.text.startswith(close, self.i):
                self.i += 1
                return
            before = self.i
            item(index)
            index += 1
            self.skip_blank(newlines=True)
            if self.text.startswith(",", self.i):
                self.i += 1
            elif self.i == before:
                self.i += 1  # not TOML after all: step over it rather than loop forever

    def string(self) -> None:
        text, start = self.text, self.i
        quote = text[start]
        if text.startswith(quote * 3, start):
            end = start + 3
            while end < len(text) and not text.startswith(quote * 3, end):
                end += 2 if quote == '"' and text[end] == "\\" else 1
            closing = end
            while end < len(text) and text[end] == quote and end - closing < 5:  # content may end in 1-2 quotes
                end += 1
        else:
            end = start + 1
            while end < len(text) and text[end] not in (quote, "\n"):
                end += 2 if quote == '"' and text[end] == "\\" else 1
            end += 1
        self.i = min(end, len(text))

    def skip_blank(self, newlines: bool = False) -> None:
        text = self.text
        while self.i < len(text):
            char = text[self.i]
            if char in " \t" or (newlines and char in "\r\n"):
                self.i += 1
            elif newlines and char == "#":
                self.skip_line()
            else:
                return

    def skip_line(self) -> None:
        end = self.text.find("\n", self.i)
        self.i = len(self.text) if end < 0 else end + 1

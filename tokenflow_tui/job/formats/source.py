"""What every input format other than our JSONL gives the scan and the run: entries in input order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

from ..problems import Problem


class Entry(NamedTuple):
    """One request of the input: `item` is the request as our own JSONL line would hold it (None when unusable)."""

    input_index: int  # not `index`: a named tuple has an index() method
    place: int  # the line of a JSONL file, the row (from 1) of a table
    item: dict[str, Any] | None
    problems: list[Problem]


class Source(Protocol):
    """An input read in order, lazily; `place_word` names what `Entry.place` counts ("line", "row")."""

    file: str
    place_word: str

    def header_problems(self) -> list[Problem]:
        """What is wrong with the input as a whole (a missing column), before any entry."""
        ...

    def entries(self) -> Iterator[Entry]: ...

    def problem(self, place: int, message: str) -> Problem: ...

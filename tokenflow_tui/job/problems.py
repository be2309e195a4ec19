"""Problems found in a job file or its input, and how they are shown to the user (DESIGN §2.1)."""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SHOWN_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem at a place in a file; `line` and `col` are 1-based, None when there is no place."""

    path: str
    line: int | None
    col: int | None
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}:{self.col or 1}: {self.message}"


class JobError(Exception):
    """The job or its input cannot be run; `total` counts problems beyond those kept in `problems`."""

    def __init__(self, problems: Iterable[Problem], total: int | None = None) -> None:
        self.problems = tuple(problems)
        self.total = max(total or 0, len(self.problems))
        super().__init__("\n".join(self.lines()))

    def lines(self, limit: int = SHOWN_PROBLEMS) -> list[str]:
        return format_problems(self.problems, limit, total=self.total)


def format_problems(problems: Sequence[Problem], limit: int = SHOWN_PROBLEMS, *, total: int | None = None) -> list[str]:
    """At most `limit` problems as `FILE:LINE:COL: message` lines, then how many were left out."""
    lines = [str(problem) for problem in problems[:limit]]
    more = max(total or 0, len(problems)) - len(lines)
    if more > 0:
        lines.append(f"… and {more} more problem{'s' if more > 1 else ''}")
    return lines


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """In reading order; problems without a place (a missing table, an unreadable file) first."""
    return sorted(problems, key=lambda p: (p.line or 0, p.col or 0))


def did_you_mean(word: str, choices: Iterable[str], form: str = '"{}"') -> str:
    """`; did you mean "x"?` for a near miss among `choices` (written as `form`), else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {form.format(close[0])}?" if close else ""


_TOML_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    dict: "a table",
    list: "an array",
    datetime.datetime: "a date-time",
    datetime.date: "a date",
    datetime.time: "a time",
}
_JSON_TYPES = {**_TOML_TYPES, dict: "an object", float: "a number", type(None): "null"}


def toml_type(value: Any) -> str:
    """What a TOML value is, for messages: "a string", "a table", …"""
    return _TOML_TYPES.get(type(value), type(value).__name__)


def json_type(value: Any) -> str:
    """What a JSON value is, for messages: "a string", "an object", "null", …"""
    return _JSON_TYPES.get(type(value), type(value).__name__)

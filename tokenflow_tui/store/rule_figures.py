"""What each [checks] check and [[retry.rules]] rule did, summed over records (issue 14).

For a check (key "check:NAME") or a rule (key "rule:INDEX"): `caught`, the attempts it caught (a check:
attempts that failed it; a rule: failed attempts it changed the next attempt of); `rescued`, the requests
whose record is done after it caught one of their attempts; and the tokens of the rescues, those of the
attempts made after the first it caught (what the rescue cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.error_kinds import CHECK_FAILED, CHECK_NAMES


@dataclass(slots=True)
class RuleFigure:
    label: str  # a check's name, or a rule's `when`
    caught: int = 0
    rescued: int = 0
    prompt_tokens: int = 0  # of the rescues
    completion_tokens: int = 0

    def to_data(self) -> list[Any]:
        return [self.label, self.caught, self.rescued, self.prompt_tokens, self.completion_tokens]


class RuleFigures:
    """Folds records one by one; a record with one attempt that is done costs one length test."""

    __slots__ = ("by_key",)

    def __init__(self) -> None:
        self.by_key: dict[str, RuleFigure] = {}

    def add(self, record: dict[str, Any]) -> None:
        attempts = record.get("attempts") or ()
        done = record.get("status") == "done"
        if done and len(attempts) < 2:
            return  # nothing was caught: the first answer passed
        first: dict[str, int] = {}  # key → the attempt it first caught
        for position, attempt in enumerate(attempts):
            error = attempt.get("error")
            if type(error) is not dict:
                continue
            for key, label in _caught_by(error):
                figure = self.by_key.get(key)
                if figure is None:
                    figure = self.by_key[key] = RuleFigure(label)
                figure.caught += 1
                first.setdefault(key, position)
        if not done:
            return
        for key, position in first.items():
            figure = self.by_key[key]
            figure.rescued += 1
            for attempt in attempts[position + 1 :]:
                usage = attempt.get("usage")
                if type(usage) is dict:
                    figure.prompt_tokens += usage.get("prompt_tokens") or 0
                    figure.completion_tokens += usage.get("completion_tokens") or 0

    def rows(self) -> list[tuple[str, RuleFigure]]:
        """("check NAME" or "rule N", figure) of what caught something: checks in checking order, then rules."""

        def order(key: str) -> tuple[int, int]:
            kind, _, name = key.partition(":")
            if kind == "rule":
                return 1, int(name) if name.isdigit() else 0
            return 0, CHECK_NAMES.index(name) if name in CHECK_NAMES else len(CHECK_NAMES)

        return [(_name(key), self.by_key[key]) for key in sorted(self.by_key, key=order)]

    def to_data(self) -> dict[str, list[Any]]:
        """Plain data for state.toml."""
        return {key: figure.to_data() for key, figure in self.by_key.items()}

    @classmethod
    def from_data(cls, data: Any) -> RuleFigures:
        """The figures `to_data` gave; empty when `data` is not such figures (an older state)."""
        figures = cls()
        if not isinstance(data, dict):
            return figures
        for key, row in data.items():
            if (
                isinstance(row, list)
                and len(row) == 5
                and isinstance(row[0], str)
                and all(type(n) is int for n in row[1:])
            ):
                figures.by_key[str(key)] = RuleFigure(row[0], row[1], row[2], row[3], row[4])
        return figures


def _caught_by(error: dict[str, Any]) -> list[tuple[str, str]]:
    """The keys (and labels) of the check that failed this attempt and of the rule that changed the next one."""
    caught = []
    if error.get("kind") == CHECK_FAILED and isinstance(error.get("check"), str):
        caught.append((check_key(error["check"]), error["check"]))
    rule = error.get("rule")
    if type(rule) is dict and type(rule.get("index")) is int:
        caught.append((rule_key(rule["index"]), str(rule.get("when") or "")))
    return caught


def check_key(name: str) -> str:
    return f"check:{name}"


def rule_key(index: int) -> str:
    return f"rule:{index}"


def _name(key: str) -> str:
    kind, _, name = key.partition(":")
    return f"rule {int(name) + 1}" if kind == "rule" and name.isdigit() else f"{kind} {name}"

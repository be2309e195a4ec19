"""The part of the input one runner of a sharded job runs: the lines whose index % count is its number."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputPart:
    """Shard `number` of `count`: by index modulo, so that every shard gets the same mix of the input
    (a long stretch of hard lines is spread) and a line's shard is known without reading the input."""

    number: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.number < self.count:
            raise ValueError(f"InputPart: shard {self.number} of {self.count} does not exist")

    def holds(self, index: int) -> bool:
        return index % self.count == self.number

    def size(self, requests: int) -> int:
        """How many of `requests` input lines are this part's."""
        return max(0, (requests - self.number + self.count - 1) // self.count)

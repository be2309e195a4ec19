"""Argument types and problem output shared by the commands."""

from __future__ import annotations

import argparse
import sys

from ..job.problems import JobError


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def print_problems(error: JobError) -> None:
    """A job's problems on stderr, one line each (DESIGN §2.1)."""
    for line in error.lines():
        print(line, file=sys.stderr)

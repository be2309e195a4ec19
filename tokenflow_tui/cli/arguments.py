"""Argument types and problem output shared by the commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..job.problems import JobError


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` (to `high`, when given)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected at least {low:,}, got {value:,}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high:,}, got {value:,}")
        return value

    return parse


positive_int = whole_number(1)


def folder_path(text: str) -> Path:
    """An argparse type: a folder's path, never empty (an empty one would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty path")
    return Path(text)


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    """The RUN_DIR argument of the commands that read a run's files."""
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", type=run_folder, help="the output directory of a run, or its job file"
    )


def run_folder(text: str) -> str:
    """An argparse type: a run's output directory as given, or for a job file the folder its runs write to."""
    path = Path(text)
    if path.suffix != ".toml" or not path.is_file():
        return text
    from ..job.reader import load_job  # only for a job file: the commands that read runs need no job otherwise

    try:
        return str(load_job(path).output)
    except JobError as error:
        raise argparse.ArgumentTypeError(f"{text} is a job file with problems: {error.lines()[0]}") from None


def print_problems(error: JobError) -> None:
    """A job's problems on stderr, one line each (DESIGN §2.1)."""
    for line in error.lines():
        print(line, file=sys.stderr)

"""`tokenflow repair RUN_DIR`: damaged lines of results.jsonl moved aside, so that their requests run again."""

from __future__ import annotations

import argparse
import sys

from ..run.exit_codes import EXIT_INVALID
from ..store.errors import StoreError
from ..store.repair import repair_results
from .arguments import add_run_dir

_SHOWN = 10  # damaged lines named one by one; the rest are counted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser)


def command(args: argparse.Namespace) -> int:
    """`tokenflow repair`: 0 when the file holds only records afterwards, 2 when it cannot be repaired."""
    try:
        repair = repair_results(args.run_dir)
    except StoreError as error:
        print(f"tokenflow repair: {error}", file=sys.stderr)
        return EXIT_INVALID
    if not repair.moved:
        print(f"{repair.results}: nothing to repair; its {repair.records:,} lines are all records")
        return 0
    for number, why in repair.moved[:_SHOWN]:
        print(f"{repair.results}:{number}: moved to {repair.damaged.name} ({why})")
    if len(repair.moved) > _SHOWN:
        print(f"… and {len(repair.moved) - _SHOWN:,} more lines")
    lines = "line" if len(repair.moved) == 1 else "lines"
    print(
        f"moved {len(repair.moved):,} damaged {lines} to {repair.damaged}; {repair.records:,} records stay. "
        "The next `tokenflow run` sends again the requests that have no record now."
    )
    return 0

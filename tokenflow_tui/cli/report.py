"""`tokenflow report RUN_DIR`: counts, failures by kind, tokens, latency."""

from __future__ import annotations

import argparse
import sys

import orjson

from ..store.errors import StoreError
from ..store.report import build_report, format_report
from .arguments import add_run_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def command(args: argparse.Namespace) -> int:
    """`tokenflow report`: 0 when reported, 2 when the run cannot be read."""
    try:
        report = build_report(args.run_dir)
    except StoreError as e:
        print(f"tokenflow report: {e}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode())
    else:
        sys.stdout.write(format_report(report))
    return 0

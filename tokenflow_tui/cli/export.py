"""`tokenflow export RUN_DIR`: one line per input request, in input order."""

from __future__ import annotations

import argparse
import os
import sys

from ..store.errors import StoreError
from ..store.export import export_results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the output directory of a run")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    parser.add_argument(
        "--only", choices=("done", "failed"), help="only the requests whose last record is done, or failed"
    )


def command(args: argparse.Namespace) -> int:
    """`tokenflow export`: 0 when exported, 2 when the run cannot be read."""
    try:
        summary = export_results(args.run_dir, args.out if args.out else sys.stdout, args.only)
    except StoreError as e:
        print(f"tokenflow export: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, without a second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    if summary.missing:
        of = f" of {summary.requests:,}" if summary.requests is not None else ""
        print(f"tokenflow export: {summary.missing:,}{of} input requests have no record yet.", file=sys.stderr)
    return 0

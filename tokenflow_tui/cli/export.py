"""`tokenflow export RUN_DIR`: one line (or row) per input request, in input order."""

from __future__ import annotations

import argparse
import os
import sys

from ..store.errors import StoreError
from ..store.export import ExportSummary
from ..store.export_formats import EXPORT_FORMATS, export_failed_as_input, export_formatted
from .arguments import add_run_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser)
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    parser.add_argument(
        "--only", choices=("done", "failed"), help="only the requests whose last record is done, or failed"
    )
    parser.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="jsonl",
        help="jsonl (our records), openai-batch (the Batch API's output lines), parquet, csv, "
        "or hf (a dataset folder for datasets.load_from_disk); parquet and hf need --out",
    )
    parser.add_argument(
        "--errors",
        metavar="FILE",
        help="with --format openai-batch: the failed requests go to FILE, as the Batch API does",
    )
    parser.add_argument(
        "--failed-as-input",
        metavar="FILE",
        help="write only the failed requests to FILE, as an input in the job's own input format",
    )


def command(args: argparse.Namespace) -> int:
    """`tokenflow export`: 0 when exported, 2 when the run cannot be read."""
    try:
        if args.failed_as_input:
            summary = export_failed_as_input(args.run_dir, args.failed_as_input)
            print(
                f"tokenflow export: {summary.written:,} failed requests written to {args.failed_as_input}.",
                file=sys.stderr,
            )
            return 0
        out = args.out if args.out else sys.stdout
        summary = export_formatted(args.run_dir, out, args.format, args.only, args.errors)
    except StoreError as e:
        print(f"tokenflow export: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, without a second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    _say_missing(summary)
    return 0


def _say_missing(summary: ExportSummary) -> None:
    if summary.missing:
        of = f" of {summary.requests:,}" if summary.requests is not None else ""
        print(f"tokenflow export: {summary.missing:,}{of} input requests have no record yet.", file=sys.stderr)

"""`tokenflow watch RUN_DIR`: the dashboard of a job another process runs, read-only."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import add_run_dir
from .attach import open_dashboard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser)


def command(args: argparse.Namespace) -> int:
    return open_dashboard(Path(args.run_dir), "watch")

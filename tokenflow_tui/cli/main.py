"""The `tokenflow` command line (DESIGN §2.1): one module per command, imported only when it runs."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from ..run.exit_codes import EXIT_INTERRUPTED

# command → its module; each has HELP, add_arguments(parser) and command(args) -> exit code
COMMANDS = ("run", "attach", "watch", "serve", "validate", "simulate", "export", "report", "bench", "repair")
_HELP = {
    "run": "run a job (the dashboard on a terminal); a rerun resumes",
    "attach": "the dashboard of a job running in another process: q detaches, Q ends the job",
    "watch": "the dashboard of a job running in another process, read-only",
    "serve": "serve the watch view (or, with --control, attach) to a browser",
    "validate": "check a job and its input without sending anything",
    "simulate": "serve the built-in OpenAI-compatible simulator",
    "export": "one line per input request, in input order",
    "report": "counts, failures by kind, tokens, latency",
    "bench": "measure this machine: engine overhead, HTTP cost per request",
    "repair": "move damaged lines of results.jsonl aside so that their requests run again",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with `command`, only that command's options are added.

    Importing every command's module would slow each call down by tens of milliseconds.
    """
    parser = argparse.ArgumentParser(
        prog="tokenflow",
        description="Send many requests to OpenAI-compatible APIs, with crash-safe results and a live dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"tokenflow {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        sub = commands.add_parser(name, help=_HELP[name])
        if command is None or command == name:
            _module(name).add_arguments(sub)
    return parser


def _version() -> str:
    """The installed distribution's version (the package's own when it runs from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tokenflow-tui")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def _module(name: str):  # noqa: ANN202 - a command module
    return importlib.import_module(f"{__package__}.{name}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: whatever is open unwinds through its `finally` and saves."""
    raise KeyboardInterrupt


def catch_sigterm() -> Callable[[int, FrameType | None], Any] | int | None:
    """SIGTERM raises KeyboardInterrupt from now on (again after an event loop took it and let it go); the handler
    it replaced."""
    return signal.signal(signal.SIGTERM, _interrupt)


def main(argv: list[str] | None = None) -> int:
    """The command line; a Ctrl-C or SIGTERM at any point (imports, opening, recovery) exits 130 without a traceback."""
    previous = catch_sigterm()
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        # a command that runs a job says itself what it saved; this is the signal before or around it
        print("tokenflow: interrupted; nothing more was done", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, without a second error when Python flushes at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str]) -> int:
    # the first word that is not an option names the command (the top level has no option with a value)
    parser = build_parser(next((word for word in argv if not word.startswith("-")), None))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    code: int = _module(args.command).command(args)
    return code

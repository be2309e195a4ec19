"""`tokenflow bench`: what this machine can push, against the built-in simulator."""

from __future__ import annotations

import argparse
import json
import sys

from ..run.exit_codes import EXIT_INTERRUPTED
from .arguments import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--quick", action="store_true", help="smaller runs: a glance in about half a minute")
    add("--json", action="store_true", help="print the figures as one JSON document")
    add("--requests", type=positive_int, metavar="N", help="HTTP requests per measured run (default: by point)")
    add("--engine-requests", type=positive_int, metavar="N", help="no-op requests of the engine measurement")
    add("--repeat", type=positive_int, metavar="K", help="measure K times and give the medians (default: 1)")
    add(
        "--points",
        type=_points,
        metavar="N@MS,...",
        help="HTTP points: requests in flight @ simulator latency in ms (default: 64@0,256@50,1000@200)",
    )


def _points(text: str) -> tuple[tuple[int, float], ...]:
    from ..bench.plan import parse_points

    try:
        return parse_points(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def command(args: argparse.Namespace) -> int:
    # imported here: every `tokenflow` command builds this parser, and a run must start fast
    from ..bench.child import BenchError
    from ..bench.plan import make_plan
    from ..bench.report import format_result
    from ..bench.suite import run_plan

    plan = make_plan(args.quick, args.requests, args.engine_requests, args.repeat, args.points)

    def progress(message: str) -> None:
        print(f"measuring {message}", file=sys.stderr, flush=True)

    try:
        result = run_plan(plan, args.quick, progress)
    except (BenchError, RuntimeError) as error:
        print(f"tokenflow bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tokenflow bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(format_result(result)))
    return 0

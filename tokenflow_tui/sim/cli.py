"""`tokenflow simulate`: serve the simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping

from .config import FAULT_KINDS, MIN_HUGE_BYTES, RETRY_AFTER_FORMS, SimulatorConfig, parse_fail
from .server import Simulator

PROG = "tokenflow simulate"
_DEFAULTS = SimulatorConfig()
_MAX_PORT = 65535


def _bounded(
    convert: Callable[[str], float], minimum: float, inclusive: bool = True, maximum: float | None = None
) -> Callable[[str], float]:
    """An argparse type: a number of at least (or above) `minimum`, and at most `maximum`."""
    relation = "at least" if inclusive else "above"

    def parse(text: str) -> float:
        try:
            value = convert(text)
            if not math.isfinite(value):
                raise ValueError(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if convert is int else ''}number") from None
        if value < minimum or (not inclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, not {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, not {text}")
        return value

    return parse


def _retry_after(text: str) -> int | str:
    if text.isdigit():
        return int(text)
    if text in RETRY_AFTER_FORMS:
        return text
    raise argparse.ArgumentTypeError(f"must be whole seconds or one of {', '.join(RETRY_AFTER_FORMS)}, not {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tokenflow simulate`: the same knobs as a job file's [endpoint.simulator]."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add(
        "--port",
        type=_bounded(int, 0, maximum=_MAX_PORT),
        default=8765,
        help="0 picks a free port (default: %(default)s)",
    )
    add(
        "--latency-ms",
        type=_bounded(float, 0),
        default=_DEFAULTS.latency_ms,
        help="mean latency (default: %(default)s)",
    )
    add("--jitter-ms", type=_bounded(float, 0), default=_DEFAULTS.jitter_ms, help="latency varies uniformly by ± this")
    add(
        "--fail",
        default="",
        metavar="KIND=P,...",
        help=f"fault mix, e.g. 429=0.05,500=0.02,reset=0.01; kinds: {' '.join(FAULT_KINDS)}",
    )
    add("--seed", type=int, default=None, help="seed of the fault and jitter draws (default: random)")
    add("--rpm-limit", type=_bounded(int, 0), default=0, help="hidden requests-per-minute limit; 0 = none")
    add(
        "--rate-window-s",
        type=_bounded(float, 0, inclusive=False),
        default=_DEFAULTS.rate_window_s,
        help="the limit counts requests per this many seconds (default: %(default)s)",
    )
    add("--ratelimit-headers", action="store_true", help="answers carry OpenAI's x-ratelimit-*-requests headers")
    add(
        "--json-answers",
        action="store_true",
        help='answers are JSON objects {"answer": …}; the fault non_json makes some plain text, length cuts some',
    )
    add("--require-key-env", metavar="NAME", help="require the API key held by this environment variable")
    add(
        "--retry-after",
        type=_retry_after,
        default=_DEFAULTS.retry_after,
        help="Retry-After of a 429 fault: seconds, date, absurd or none (default: %(default)s)",
    )
    add("--retry-after-ms", type=_bounded(int, 0), default=None, help="retry-after-ms of a 429 fault (default: none)")
    positive = _bounded(float, 0, inclusive=False)
    add("--stall-s", type=positive, default=_DEFAULTS.stall_s, help="a stalled connection closes after this")
    add("--drip-interval-ms", type=positive, default=_DEFAULTS.drip_interval_ms, help="pause between drip pieces")
    add(
        "--token-interval-ms",
        type=_bounded(float, 0),
        default=_DEFAULTS.token_interval_ms,
        help="pause between the events of a streamed answer (default: %(default)s, all at once)",
    )
    add(
        "--huge-bytes",
        type=_bounded(int, MIN_HUGE_BYTES),
        default=_DEFAULTS.huge_bytes,
        help="body size of a huge fault",
    )
    add("--model", default=_DEFAULTS.model, help="the model GET /models lists (default: %(default)s)")
    # For SimulatorProcess: its parent holds our stdin, so end of input means the parent is gone (even by kill -9).
    add("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)


def config_to_args(config: SimulatorConfig) -> list[str]:
    """Options that give `config` back, except require_key, which must travel by environment variable."""
    # OPTION=VALUE, so that a value starting with "-" (a model name, say) is not read as an option.
    args = [
        f"--latency-ms={config.latency_ms!r}",
        f"--jitter-ms={config.jitter_ms!r}",
        "--fail=" + ",".join(f"{kind}={probability!r}" for kind, probability in config.fail.items()),
        f"--rpm-limit={config.rpm_limit}",
        f"--rate-window-s={config.rate_window_s!r}",
        f"--retry-after={config.retry_after}",
        f"--stall-s={config.stall_s!r}",
        f"--drip-interval-ms={config.drip_interval_ms!r}",
        f"--token-interval-ms={config.token_interval_ms!r}",
        f"--huge-bytes={config.huge_bytes}",
        f"--model={config.model}",
    ]
    if config.seed is not None:
        args.append(f"--seed={config.seed}")
    if config.retry_after_ms is not None:
        args.append(f"--retry-after-ms={config.retry_after_ms}")
    if config.ratelimit_headers:
        args.append("--ratelimit-headers")
    if config.json_answers:
        args.append("--json-answers")
    return args


def _error(message: str, code: int = 2) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _stop_on_eof(loop: asyncio.AbstractEventLoop, fd: int, stop: asyncio.Event) -> None:
    def read() -> None:
        if not os.read(fd, 4096):
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, read)


async def _serve(config: SimulatorConfig, host: str, port: int, exit_on_stdin_eof: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if exit_on_stdin_eof:
        _stop_on_eof(loop, sys.stdin.fileno(), stop)
    simulator = Simulator(config)
    try:
        await simulator.start(host, port)
    except OSError as error:
        # asyncio wraps bind errors in a long sentence of its own; the errno's text is the useful part.
        reason = os.strerror(error.errno) if error.errno and error.errno > 0 else error.strerror or str(error)
        return _error(f"cannot listen on {host}:{port}: {reason}", code=1)
    try:
        print(f"simulator listening on {simulator.base_url}", flush=True)
        await stop.wait()
    finally:
        await simulator.close()
    return 0


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> SimulatorConfig:
    """The configuration the options describe (the key from `environ`, by default os.environ).

    Raises ValueError with a one-line sentence when they are wrong.
    """
    environ = os.environ if environ is None else environ
    try:
        fail = parse_fail(args.fail)
    except ValueError as error:
        raise ValueError(f"--fail: {error}") from None
    key = None
    if args.require_key_env:
        key = environ.get(args.require_key_env)
        if not key:
            raise ValueError(f"--require-key-env: the environment variable {args.require_key_env} is not set")
    return SimulatorConfig(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        fail=fail,
        seed=args.seed,
        retry_after=args.retry_after,
        retry_after_ms=args.retry_after_ms,
        stall_s=args.stall_s,
        drip_interval_ms=args.drip_interval_ms,
        token_interval_ms=args.token_interval_ms,
        huge_bytes=args.huge_bytes,
        rpm_limit=args.rpm_limit,
        rate_window_s=args.rate_window_s,
        ratelimit_headers=args.ratelimit_headers,
        require_key=key,
        model=args.model,
        json_answers=args.json_answers,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 then, 2 on a bad option, 1 when it cannot listen."""
    try:
        config = config_from_args(args)
    except ValueError as error:
        return _error(str(error))
    return asyncio.run(_serve(config, args.host, args.port, args.exit_on_stdin_eof))


def main(argv: list[str] | None = None) -> int:
    """`python -m tokenflow_tui.sim`: the same as `tokenflow simulate`."""
    parser = argparse.ArgumentParser(prog=PROG, description="Serve the built-in OpenAI-compatible simulator.")
    add_arguments(parser)
    return run(parser.parse_args(argv))

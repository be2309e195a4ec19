"""`tokenflow serve RUN_DIR`: the watch view (attach with --control) in a browser, through textual-serve.

Bound to 127.0.0.1 unless --host says otherwise. Every request needs the random token of the URL printed at the
start: the page's address carries it, and the page hands it on to its websocket and files in a cookie.
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

from ..run.exit_codes import EXIT_INVALID
from .arguments import add_run_dir, whole_number

_COOKIE = "tokenflow_token"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser)
    add = parser.add_argument
    add("--port", type=whole_number(1, 65535), default=8000, help="the port to listen on (default 8000)")
    add(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: this machine only; use an ssh tunnel to reach it)",
    )
    add("--control", action="store_true", help="serve the attached view, which steers the job, not the watch view")


def command(args: argparse.Namespace) -> int:
    try:
        from aiohttp import web
        from textual_serve.server import Server
    except ImportError:
        print("tokenflow serve: needs textual-serve: pip install 'tokenflow-tui[serve]'", file=sys.stderr)
        return EXIT_INVALID
    run_dir = Path(args.run_dir).resolve()
    if not run_dir.is_dir():
        print(f"tokenflow serve: {args.run_dir}: no such folder", file=sys.stderr)
        return EXIT_INVALID
    token = secrets.token_urlsafe(24)
    view = "attach" if args.control else "watch"
    shown = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{shown}:{args.port}"

    class TokenServer(Server):  # type: ignore[misc]  # textual-serve has no type hints for its Server
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(_guard(web, token, None if args.host != "127.0.0.1" else {shown, "localhost"}))
            return app

        async def on_startup(self, app: web.Application) -> None:
            print(f"serving the {view} view of {run_dir} on {base}/?token={token}", flush=True)
            print("anyone with this address can see the job; Ctrl-C stops serving (the job goes on)", flush=True)

    words = [sys.executable, "-m", "tokenflow_tui", view, str(run_dir)]
    server = TokenServer(shlex.join(words), host=args.host, port=args.port, title=f"tokenflow {view}", public_url=base)
    server.serve()
    return 0


def _guard(web: Any, token: str, hosts: set[str] | None) -> Any:
    """An aiohttp middleware: the token (query or cookie) on every request; with `hosts`, the Host header too."""

    @web.middleware
    async def guard(request: Any, handler: Any) -> Any:
        if hosts is not None and request.host.rpartition(":")[0] not in hosts:
            raise web.HTTPForbidden(text="tokenflow serve: this address is not served (see --host)\n")
        given = request.query.get("token") or request.cookies.get(_COOKIE, "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPForbidden(text="tokenflow serve: the address needs the token printed by `tokenflow serve`\n")
        response = await handler(request)
        if request.path == "/":
            response.set_cookie(_COOKIE, token, httponly=True, samesite="Strict")
        return response

    return guard

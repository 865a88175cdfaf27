"""``crest-proxy console``: the audit console alone, over archived log files or the central store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

_KEY_ENV = "CREST_PROXY_ADMIN_KEY"


def register(subparsers: Any) -> None:
    """Add the ``console`` subcommand."""
    parser = subparsers.add_parser(
        "console",
        help="browse audit records in a web page (files or the central store)",
        description="Serve the audit console (docs/console.md) over audit log files or PostgreSQL. "
        "Sign in with the admin key, read from an environment variable (never a flag: ps shows flags).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--audit-log", nargs="+", type=Path, metavar="FILE", help="audit log files (any order)"
    )
    source.add_argument("--audit-db", metavar="DSN", help="the central audit store (postgresql://…)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8081, help="port (default: %(default)s)")
    parser.add_argument(
        "--admin-key-env",
        default=_KEY_ENV,
        metavar="VAR",
        help="variable holding the admin key (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the key and the files, then serve until interrupted; problems are one line and exit 2."""
    key = os.environ.get(args.admin_key_env, "")
    if not key:
        problem = f"set the admin key in ${args.admin_key_env} (the console never runs without one)"
        print(f"crest-proxy console: {problem}", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.audit_log or () if not p.is_file()]
    if missing:
        print(f"crest-proxy console: no such audit log file: {', '.join(missing)}", file=sys.stderr)
        return 2
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    from crest_proxy.console import reader_for
    from crest_proxy.console.app import console_routes

    reader = reader_for(args.audit_log, args.audit_db)
    home = Route("/", lambda _r: RedirectResponse("/console/", 307))
    app = Starlette(routes=[home, *console_routes(reader, key)])
    print(f"crest-proxy console on http://{args.host}:{args.port}/console/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

"""``serve`` flags for the HTTP limits (issue 14): per-tenant in-flight cap, body and header deadlines,
connection and header caps, upstream answer size caps. Defaults are ``ServerSettings``'."""

from __future__ import annotations

import argparse
from typing import Any

from crest_proxy.settings import ServerSettings

_D = ServerSettings
# flag -> (settings field, type, help)
_FLAGS: dict[str, tuple[str, type, str]] = {
    "--max-inflight-per-tenant": ("max_inflight_per_tenant", int, "one tenant's share of requests in flight"),
    "--body-timeout": ("body_timeout_s", float, "seconds a client has to send its request body (408)"),
    "--max-connections": ("max_connections", int, "open connections; past it the longest-idle one is closed"),
    "--keep-alive-timeout": ("keep_alive_s", float, "seconds an idle kept-alive connection stays open"),
    "--header-timeout": ("header_timeout_s", float, "seconds a request line and headers may take (408)"),
    "--max-header-bytes": ("max_header_bytes", int, "bytes of request line and headers (431)"),
    "--max-headers": ("max_headers", int, "request headers per request (431)"),
    "--max-upstream-body-bytes": ("max_upstream_body_bytes", int, "bytes of an upstream JSON answer (502)"),
    "--max-upstream-event-bytes": (
        "max_upstream_event_bytes",
        int,
        "bytes of one upstream stream event (502)",
    ),
}


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the limit flags to ``serve``."""
    for flag, (field, kind, text) in _FLAGS.items():
        parser.add_argument(
            flag, type=kind, default=getattr(_D, field), help=f"{text} (default: %(default)s)"
        )


def limit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ServerSettings`` fields the limit flags set."""
    return {
        field: getattr(args, flag.lstrip("-").replace("-", "_")) for flag, (field, _, _) in _FLAGS.items()
    }

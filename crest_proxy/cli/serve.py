"""``crest-proxy serve``: validate policies, load the classifier, run the app under uvicorn.

Its flags are built from ``ServerSettings`` and ``ClassifierSettings`` (``cli.flags``): every setting has
one, with its default and a ``CREST_PROXY_…`` environment variable. Only logging is serve's own.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from crest_proxy.classifier.settings import ClassifierSettings
from crest_proxy.cli.audit import check_audit_destinations
from crest_proxy.cli.flags import add_flags, settings_from
from crest_proxy.cli.preflight import check_audit_log, check_port
from crest_proxy.settings import ServerSettings


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand."""
    p = subparsers.add_parser(
        "serve",
        help="run the guardrail proxy",
        description="Run the guardrail proxy. Every flag can also be set by the environment variable "
        "named in its help (for containers); a flag on the command line wins.",
    )
    add_flags(p, ServerSettings)
    add_flags(p, ClassifierSettings)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"], help="server log lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate, load, serve; configuration and model problems print one clear message and exit 1."""
    import uvicorn

    from crest_proxy.classifier import load_classifier
    from crest_proxy.errors import ConfigError, ModelNotAvailableError
    from crest_proxy.policy.files import load_policies
    from crest_proxy.server.app import create_app
    from crest_proxy.server.connections import raise_open_file_limit, uvicorn_options
    from crest_proxy.server.logs import configure_logging

    configure_logging(args.log_level, args.log_format)
    try:
        settings = settings_from(ServerSettings, args)
        check_port(settings.host, settings.port)
        check_audit_log(settings.audit_log if settings.audit_file else None)
        check_audit_destinations(settings)  # a second serve on the same audit file stops here, in one line
        policies = load_policies(settings.policies_dir)
        # Progress reaches stderr through the crest_proxy.classifier logger configured above.
        classifier = load_classifier(settings_from(ClassifierSettings, args))
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    except (ModelNotAvailableError, ValueError) as exc:  # ValueError: invalid ClassifierSettings
        print(f"crest-proxy: {exc}", file=sys.stderr)
        return 1
    app = create_app(settings, policies=policies, classifier=classifier)
    raise_open_file_limit(settings.max_connections + 256)  # sockets, plus files, models and upstream pools
    # log_config=None: uvicorn keeps the logging set up above; its access log is replaced by ours.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        **uvicorn_options(settings),  # connection cap, header limits and deadlines, keep-alive
    )
    return 0

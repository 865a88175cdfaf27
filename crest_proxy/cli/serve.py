"""``crest-proxy serve``: validate policies, load the classifier, run the app under uvicorn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand."""
    p = subparsers.add_parser("serve", help="run the guardrail proxy")
    p.add_argument("--policies", type=Path, default=Path("policies"), help="directory of tenant YAML files")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--model", default="repelloai/CREST-Base", help="hub id or local directory (default: %(default)s)"
    )
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnx", "torch", "bf16"],
        help="inference backend (auto: onnx int8 plus bf16 where native, each batch on the faster one)",
    )
    p.add_argument("--no-quantize", action="store_true", help="run fp32 instead of int8")
    p.add_argument("--audit-log", type=Path, default=Path("crest-audit.jsonl"), help="JSON Lines audit file")
    p.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024)
    p.add_argument("--classify-timeout", type=float, default=10.0, help="seconds before on_error applies")
    p.add_argument("--max-inflight", type=int, default=1024, help="in-flight cap before 503s")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"], help="server log lines")
    p.add_argument("--audit-max-bytes", type=int, default=None, help="rotate the audit log past this size")
    p.add_argument(
        "--audit-max-age",
        type=float,
        default=None,
        help="rotate it when its oldest record is this many seconds old",
    )
    p.add_argument(
        "--policy-poll",
        type=float,
        default=1.0,
        help="seconds between policy directory checks; 0: SIGHUP only",
    )
    p.add_argument(
        "--metrics-token-env", metavar="VAR", default=None, help="require Bearer $VAR on GET /metrics"
    )
    p.add_argument(
        "--no-language-id", action="store_true", help="do not identify languages (no per-language policy)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate, load, serve; configuration and model problems print one clear message and exit 1."""
    import uvicorn

    from crest_proxy.classifier import ClassifierSettings, load_classifier
    from crest_proxy.errors import ConfigError, ModelNotAvailableError
    from crest_proxy.policy.files import load_policies
    from crest_proxy.server.app import create_app
    from crest_proxy.server.logs import configure_logging
    from crest_proxy.settings import ServerSettings

    configure_logging(args.log_level, args.log_format)
    try:
        settings = ServerSettings(
            host=args.host,
            port=args.port,
            policies_dir=args.policies,
            audit_log=args.audit_log,
            max_body_bytes=args.max_body_bytes,
            max_inflight=args.max_inflight,
            classify_timeout_s=args.classify_timeout,
            audit_max_bytes=args.audit_max_bytes,
            audit_max_age_s=args.audit_max_age,
            policy_poll_s=args.policy_poll,
            metrics_token=_metrics_token(args.metrics_token_env),
            detect_language=not args.no_language_id,
        )
        policies = load_policies(args.policies)
        classifier = load_classifier(
            ClassifierSettings(
                model=args.model, revision=args.revision, backend=args.backend, quantize=not args.no_quantize
            ),
            # Progress reaches stderr through the crest_proxy.classifier logger configured above.
        )
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    except ModelNotAvailableError as exc:
        print(f"crest-proxy: {exc}", file=sys.stderr)
        return 1
    app = create_app(settings, policies=policies, classifier=classifier)
    # log_config=None: uvicorn keeps the logging set up above; its access log is replaced by ours.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def _metrics_token(variable: str | None) -> str | None:
    """The /metrics token from the environment (never from the command line, where ``ps`` shows it)."""
    import os

    from crest_proxy.errors import ConfigError

    if variable is None:
        return None
    token = os.environ.get(variable)
    if not token:
        raise ConfigError(
            f"--metrics-token-env: environment variable {variable} is not set; set it or drop the flag"
        )
    return token

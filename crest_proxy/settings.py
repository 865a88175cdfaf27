"""Settings of the proxy server: the one home of every server default (the CLI is built from them).

``crest-proxy serve`` has a flag for every field here and in ``ClassifierSettings`` (``cli.flags``):
``classify_timeout_s`` is ``--classify-timeout`` and ``CREST_PROXY_CLASSIFY_TIMEOUT``.
To add a setting, add ONE line: ``name: type = default  # help text`` (the comment is the flag's help), or
``name: type = setting(default, help=..., flag=..., choices=..., secret=...)`` when the flag needs more.
Then validate it in ``__post_init__`` if it can be wrong. Types: str, int, float, bool, Path, or X | None.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crest_proxy.errors import ConfigError


def setting(
    default: Any,
    *,
    help: str | None = None,
    flag: str | None = None,
    choices: Iterable[Any] | None = None,
    secret: bool = False,
) -> Any:
    """A settings field whose command-line flag needs more than its name and comment (``cli.flags``)."""
    meta = {"help": help, "flag": flag, "choices": None if choices is None else tuple(choices)}
    return dataclasses.field(default=default, metadata={**meta, "secret": secret})


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """How the proxy server runs: address, where policies live, audit log, limits."""

    host: str = "127.0.0.1"  # address to listen on
    port: int = 8080  # port to listen on (0: any free port)
    policies_dir: Path = setting(Path("policies"), flag="--policies", help="directory of tenant YAML files")
    audit_log: Path = Path("crest-audit.jsonl")  # JSON Lines audit file, hash-chained
    max_body_bytes: int = 8 * 1024 * 1024  # larger request bodies are refused with 413
    classify_timeout_s: float = 10.0  # seconds before the policy's on_error applies
    # Requests in flight beyond this are refused with 503: bounded memory under overload.
    max_inflight: int = 1024
    policy_poll_s: float = 1.0  # how often the policies directory is checked for changes; 0: never
    metrics_token: str | None = setting(
        None, secret=True, help='when set, GET /metrics needs "Authorization: Bearer <token>"'
    )
    audit_max_bytes: int | None = None  # rotate the audit log past this size …
    audit_max_age_s: float | None = None  # … or once its first record is this old
    # Audit durability (issue 14): never (a crash of the process loses nothing, a crash of the machine may),
    # batch (fsync once per written batch), always (fsync every record).
    audit_fsync: str = setting("never", choices=("never", "batch", "always"))
    # Central audit store (issue 15, docs/audit.md): also write every decision to PostgreSQL
    # (postgresql://…; keep the password in PGPASSWORD or ~/.pgpass, not here: ps shows flags).
    audit_db: str | None = None
    audit_spool: Path | None = None  # where records wait while the database is down (default: beside the log)
    audit_file: bool = setting(True, flag="--no-audit-log", help="with --audit-db: write no JSON Lines file")
    detect_language: bool = setting(
        True, flag="--language-id", help="identify each screened text's language (per-language policies)"
    )
    # HTTP limits (issue 14): a tenant's share of the in-flight cap, the time a client gets to send its body,
    # and what the connection layer (``server.connections``) allows per socket and in all.
    max_inflight_per_tenant: int = 256
    body_timeout_s: float = 30.0
    max_connections: int = 1000
    keep_alive_s: float = setting(
        5.0, flag="--keep-alive-timeout", help="seconds an idle kept-alive connection stays open"
    )
    header_timeout_s: float = 10.0  # time allowed for a request line and its headers to arrive
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    # Upstream answers: whole JSON bodies and single stream events beyond these are refused with 502.
    max_upstream_body_bytes: int = 16 * 1024 * 1024
    max_upstream_event_bytes: int = 1024 * 1024
    # Screening budget (issue 14): tokens one request (or one answer) may send to the classifier; more is
    # refused (413; an answer: 502) whatever on_error says. 64 windows' worth; a policy's max_screen_tokens
    # overrides it per tenant.
    max_screen_tokens: int = 64 * 512
    # The audit console (issue 17, docs/console.md): served under /console only when this key is set.
    admin_key: str | None = setting(
        None, secret=True, help="serve the audit console under /console, signed in with this key"
    )

    def __post_init__(self) -> None:
        checks = {
            f"policy_poll_s: {self.policy_poll_s:g} is negative; use seconds, or 0 to turn polling off": (
                self.policy_poll_s >= 0
            ),
            f"audit_max_bytes: {self.audit_max_bytes} is not positive; use bytes": (
                self.audit_max_bytes is None or self.audit_max_bytes > 0
            ),
            f"audit_max_age_s: {self.audit_max_age_s} is not positive; use seconds": (
                self.audit_max_age_s is None or self.audit_max_age_s > 0
            ),
            f"port: {self.port} is out of range; use 0 to 65535": 0 <= self.port <= 65535,
            f"audit_fsync: {self.audit_fsync!r} is not one of never, batch, always": (
                self.audit_fsync in ("never", "batch", "always")
            ),
            "audit_file: False needs audit_db (records must go somewhere)": (
                self.audit_file or bool(self.audit_db)
            ),
            f"max_body_bytes: {self.max_body_bytes} is not positive; use bytes": self.max_body_bytes > 0,
            f"max_inflight: {self.max_inflight} is not positive; use a request count": self.max_inflight > 0,
            f"classify_timeout_s: {self.classify_timeout_s:g} is not positive; use seconds": (
                self.classify_timeout_s > 0
            ),
            **_positive(
                self, "max_inflight_per_tenant", "max_connections", "max_header_bytes", "max_headers"
            ),
            **_positive(self, "body_timeout_s", "keep_alive_s", "header_timeout_s"),
            **_positive(self, "max_upstream_body_bytes", "max_upstream_event_bytes"),
            **_positive(self, "max_screen_tokens"),
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise ConfigError(_summary(problems), problems=problems)


def _positive(settings: ServerSettings, *names: str) -> dict[str, bool]:
    """One check per field: it must be above zero."""
    return {
        f"{name}: {getattr(settings, name):g} is not positive": getattr(settings, name) > 0 for name in names
    }


def _summary(problems: list[str]) -> str:
    """The ``ConfigError`` message: the problem itself, or a count and one problem per line."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} configuration problems:\n" + "\n".join(problems)

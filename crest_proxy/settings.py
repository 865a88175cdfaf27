"""Settings of the proxy server: the one home of every server default (the CLI is built from them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crest_proxy.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """How the proxy server runs: address, where policies live, audit log, limits."""

    host: str = "127.0.0.1"
    port: int = 8080
    policies_dir: Path = Path("policies")
    audit_log: Path | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    classify_timeout_s: float = 10.0
    # Requests in flight beyond this are refused with 503: bounded memory under overload.
    max_inflight: int = 1024
    policy_poll_s: float = 1.0  # how often the policies directory is checked for changes; 0: never
    metrics_token: str | None = None  # when set, GET /metrics needs "Authorization: Bearer <token>"
    audit_max_bytes: int | None = None  # rotate the audit log past this size …
    audit_max_age_s: float | None = None  # … or once its first record is this old
    detect_language: bool = True  # identify each screened text's language (per-language policies)

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
            f"max_body_bytes: {self.max_body_bytes} is not positive; use bytes": self.max_body_bytes > 0,
            f"max_inflight: {self.max_inflight} is not positive; use a request count": self.max_inflight > 0,
            f"classify_timeout_s: {self.classify_timeout_s:g} is not positive; use seconds": (
                self.classify_timeout_s > 0
            ),
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise ConfigError(_summary(problems), problems=problems)


def _summary(problems: list[str]) -> str:
    """The ``ConfigError`` message: the problem itself, or a count and one problem per line."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} configuration problems:\n" + "\n".join(problems)

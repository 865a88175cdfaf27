"""Value types shared by every layer: directions, actions, scores, verdicts, audit records (no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Direction(str, enum.Enum):
    """Which way the screened text travels."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Action(str, enum.Enum):
    """What a policy does with a text; ordered so that the strictest action wins."""

    ALLOW = "allow"
    LOG = "log"
    REDACT = "redact"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        """Rank used to combine actions (higher is stricter)."""
        return _SEVERITY[self]

    @classmethod
    def strictest(cls, *actions: Action) -> Action:
        """The strictest of ``actions`` (ALLOW when none are given)."""
        return max(actions, key=lambda a: a.severity, default=cls.ALLOW)


_SEVERITY = {Action.ALLOW: 0, Action.LOG: 1, Action.REDACT: 2, Action.BLOCK: 3}


@dataclass(frozen=True)
class Score:
    """The classifier's answer for one text: P(unsafe), the label, and how many 512-token windows it took."""

    score: float
    label: str
    windows: int = 1


@dataclass(frozen=True)
class Span:
    """A half-open character range ``[start, end)`` of a text and what flagged it (a rule or ``crest``)."""

    start: int
    end: int
    source: str


@dataclass(frozen=True)
class Verdict:
    """The policy's decision for one screened text."""

    action: Action
    score: float
    threshold: float
    rules: tuple[str, ...] = ()
    spans: tuple[Span, ...] = ()
    language: str | None = None

    @property
    def flagged(self) -> bool:
        """True when anything (classifier or a rule) asked for more than ALLOW."""
        return self.action is not Action.ALLOW


@dataclass(frozen=True)
class AuditRecord:
    """One screening decision as written to the audit log (content only as the policy allows)."""

    ts: str
    request_id: str
    tenant: str
    direction: str
    endpoint: str
    model: str | None
    action: str
    score: float | None
    threshold: float | None
    rules: tuple[str, ...]
    latency_ms: float
    upstream_status: int | None
    text_sha256: str | None
    texts: int = 0
    windows: int = 0
    language: str | None = None
    error: str | None = None
    content: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The client's own x-request-id, kept for correlation only: ``request_id`` is always the proxy's own.
    client_request_id: str | None = None

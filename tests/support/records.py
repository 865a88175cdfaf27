"""``make_record``: an audit record for tests of sinks, chains and queries (fields overridable)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from crest_proxy.types import AuditRecord


def make_record(n: int = 0, **changes: Any) -> AuditRecord:
    """Record number ``n`` (request id ``req-<n>``) of tenant ``acme``, inbound, allowed; ``changes`` win."""
    base = AuditRecord(
        ts="2025-01-01T00:00:00.000Z",
        request_id=f"req-{n}",
        tenant="acme",
        direction="inbound",
        endpoint="chat.completions",
        model="gpt-4o",
        action="allow",
        score=0.01,
        threshold=0.5,
        rules=("pii", "email"),
        latency_ms=1.5,
        upstream_status=None,
        text_sha256=None,
    )
    return replace(base, **changes)

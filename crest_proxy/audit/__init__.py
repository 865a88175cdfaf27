"""The audit trail: records' content (``sink``), the hash chain (``chain``), files and rotation
(``files``), and reading records back (``query``)."""

from __future__ import annotations

from crest_proxy.audit.sink import AuditSink, JsonlAuditSink, MemoryAuditSink

__all__ = ["AuditSink", "JsonlAuditSink", "MemoryAuditSink"]

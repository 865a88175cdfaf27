"""The audit trail: record content (``record``), the hash chain (``chain``), the file sink (``jsonl``: files
and rotation in ``files``, torn-line ``repair``, the writer ``lock``), the PostgreSQL store (``database``,
``schema``, ``spool``, read back by ``dbread``), and reading records back (``query``). docs/audit.md."""

from __future__ import annotations

from crest_proxy.audit.sink import AuditSink, JsonlAuditSink, MemoryAuditSink

__all__ = ["AuditSink", "JsonlAuditSink", "MemoryAuditSink"]

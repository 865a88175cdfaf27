"""Several sinks as one (the JSONL file and the database, ``serve --audit-log … --audit-db …``)."""

from __future__ import annotations

import asyncio
from dataclasses import fields
from typing import Any

from crest_proxy.audit.queued import AuditStats
from crest_proxy.audit.sink import audit_problem, write_confirmed
from crest_proxy.types import AuditRecord


class FanOutAuditSink:
    """Writes every record to each sink; a record is confirmed when every sink confirmed it."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks

    async def start(self) -> None:
        """Start each sink (those started already are closed again if a later one fails)."""
        started: list[Any] = []
        try:
            for sink in self.sinks:
                await sink.start()
                started.append(sink)
        except BaseException:
            await asyncio.gather(*(s.aclose() for s in started), return_exceptions=True)
            raise

    async def write(self, record: AuditRecord) -> None:
        """Queue ``record`` in every sink."""
        for sink in self.sinks:
            await sink.write(record)

    async def write_confirmed(self, record: AuditRecord, timeout_s: float = 5.0) -> bool:
        """Write ``record`` to every sink and wait for each."""
        written = await asyncio.gather(*(write_confirmed(s, record, timeout_s) for s in self.sinks))
        return all(written)

    async def aclose(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            await sink.aclose()

    def flush_sync(self) -> None:
        """Wait for every sink's queue (tests, signal handlers)."""
        for sink in self.sinks:
            sink.flush_sync()

    def problem(self) -> str | None:
        """The first sink's problem, if any."""
        return next((p for p in map(audit_problem, self.sinks) if p is not None), None)

    def detail(self) -> str:
        """The sinks, one after the other."""
        return "; ".join(sink_detail(s) for s in self.sinks)

    @property
    def lost(self) -> int:
        """Records lost by any sink."""
        return self.stats.lost

    @property
    def stats(self) -> AuditStats:
        """The sinks' counters, added up."""
        parts = [getattr(s, "stats", AuditStats()) for s in self.sinks]
        return AuditStats(**{f.name: sum(getattr(p, f.name) for p in parts) for f in fields(AuditStats)})


def sink_detail(sink: Any) -> str:
    """What ``/readyz`` says about a working sink."""
    detail = getattr(sink, "detail", None)
    if callable(detail):
        return str(detail())
    return str(getattr(sink, "path", type(sink).__name__))

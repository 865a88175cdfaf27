"""The access middleware: times each request, counts it by tenant / endpoint / status, writes the access log.

One place for every request, streaming included (the time runs until the last body byte is sent), so
endpoints need no metrics calls of their own. It must sit inside ``RequestIdMiddleware`` (which sets the
request id it reads); the tenant is what ``proxy.authenticate`` stored in the request state.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Collection, Mapping
from datetime import datetime, timezone

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crest_proxy.errors import ProxyError
from crest_proxy.server.logs import REQUEST_ID
from crest_proxy.server.metrics import Metrics
from crest_proxy.types import AuditRecord, Direction

log = logging.getLogger("crest_proxy.server.access")
OTHER = "other"  # the endpoint label of unknown paths, so that scanners cannot grow the label set
# A client's x-request-id is kept (for correlation) only when it is a short, log-safe token.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def mint_request_id() -> str:
    """A fresh, unique request id: the proxy never adopts a client's, which another tenant could copy."""
    return f"req_{uuid.uuid4().hex}"


def client_request_id_of(headers: Mapping[str, str]) -> str | None:
    """The client's ``x-request-id`` when it is a safe token (it ends up in logs and audit), else None."""
    incoming = headers.get("x-request-id", "")
    return incoming if _CLIENT_REQUEST_ID.match(incoming) else None


def refusal_record(
    error: ProxyError,
    *,
    request_id: str,
    tenant: str,
    endpoint: str,
    client_request_id: str | None = None,
) -> AuditRecord:
    """The audit record of an authenticated request refused before screening (malformed, too big, slow)."""
    return AuditRecord(
        ts=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        request_id=request_id,
        tenant=tenant,
        direction=Direction.INBOUND.value,
        endpoint=endpoint,
        model=None,
        action="block",
        score=None,
        threshold=None,
        rules=(),
        latency_ms=0.0,
        upstream_status=None,
        text_sha256=None,
        error=error.code,
        extra={"refused": error.status_code, "message": error.message[:300]},
        client_request_id=client_request_id,
    )


class AccessMiddleware:
    """Counts and logs every HTTP request (no bodies, no query strings: they may hold user text)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, paths: Collection[str]) -> None:
        self.app = app
        self._metrics = metrics
        self._paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        # Not reset afterwards on purpose: the error handler that logs an unexpected exception runs outside
        # this middleware, in the same task, and should still name the request.
        REQUEST_ID.set(state.get("request_id"))
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self._record(scope, state, status, time.perf_counter() - started)

    def _record(self, scope: Scope, state: dict[str, object], status: int, seconds: float) -> None:
        path = scope["path"]
        endpoint = path if path in self._paths else OTHER
        tenant = state.get("tenant")
        tenant = tenant if isinstance(tenant, str) else None
        self._metrics.observe_request(tenant, endpoint, status, seconds)
        client = scope.get("client")
        log.info(
            "%s %s %d %.1fms",
            scope["method"],
            path[:200],
            status,
            seconds * 1000,
            extra={
                "request_id": state.get("request_id"),
                "method": scope["method"],
                "path": path[:200],
                "status": status,
                "tenant": tenant,
                "duration_ms": round(seconds * 1000, 3),
                "client": client[0] if client else None,
            },
        )

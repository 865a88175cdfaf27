"""Load shedding: a cap on requests in flight, answered with an OpenAI-style 503 instead of growing memory."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from crest_proxy import wire
from crest_proxy.errors import ServiceUnavailableError


class InflightLimitMiddleware:
    """Refuses API requests beyond ``limit`` in flight with 503 + ``Retry-After``; probes always pass."""

    def __init__(self, app: ASGIApp, *, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            await self._refuse(send)
            return
        # A plain counter is enough: ASGI calls run on one event loop thread.
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    async def _refuse(self, send: Send) -> None:
        error = ServiceUnavailableError(
            f"crest-proxy is at its limit of {self.limit} requests in flight; retry shortly.",
            code="overloaded",
        )
        body = json.dumps(wire.error_body_for(error)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.retry_after_s).encode()),
        ]
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

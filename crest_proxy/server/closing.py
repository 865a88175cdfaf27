"""Errors and connections: an error answer never resets a client's pooled connection without warning.

Uvicorn closes a connection whenever the app raises, even after a whole error response went out, and
says nothing: the client's next request on that pooled connection is then reset (issue 14). This
middleware, the outermost of ours, turns an exception into the OpenAI-style 500 itself and swallows it,
and marks every answer after which the connection will be closed (500s, 408) with ``Connection: close``.
An exception in the middle of a streamed answer still ends the connection: nothing else can tell the
client the body is incomplete.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crest_proxy import wire
from crest_proxy.errors import ProxyError

log = logging.getLogger("crest_proxy.server.closing")

# Statuses after which the connection is closed: the request is in an unknown state (408: its body never
# came whole; 500: the proxy failed somewhere in the middle of it).
CLOSING_STATUSES = frozenset({408, 500})
UNEXPECTED = "The proxy hit an unexpected error; it has been logged."


class CloseOnErrorMiddleware:
    """Answers unexpected exceptions with a JSON 500 and says ``Connection: close`` wherever it closes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        progress = {"started": False, "complete": False}

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                progress["started"] = True
                message = _with_close(message) if message["status"] in CLOSING_STATUSES else message
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                progress["complete"] = True
            await send(message)

        try:
            await self.app(scope, receive, send_marked)
        except Exception as exc:
            if progress["started"] and not progress["complete"]:
                raise  # mid-body: only closing the connection tells the client the answer is cut off
            if not progress["started"]:
                log.exception("unexpected error on %s", scope.get("path", "")[:200], exc_info=exc)
                await _send_unexpected(scope, send)


def _with_close(message: Message) -> Message:
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
    return {**message, "headers": [*headers, (b"connection", b"close")]}


async def _send_unexpected(scope: Scope, send: Send) -> None:
    body = json.dumps(wire.error_body_for(ProxyError(UNEXPECTED))).encode()
    request_id = str(scope.get("state", {}).get("request_id", ""))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *([(b"x-request-id", request_id.encode())] if request_id else []),
    ]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""A scriptable fake Anthropic Messages upstream (a Starlette app) that records what it receives.

Answers ``POST /v1/messages`` (whole, or as the API's event stream) and ``/v1/messages/count_tokens``.
Tests set ``content`` (the blocks of a whole answer) or ``events`` (a scripted stream) between calls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.upstream import Received


def text_events(pieces: list[str], *, index: int = 0) -> list[dict[str, Any]]:
    """The content events of one text block streamed as ``pieces``."""
    start = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
    deltas = [
        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}}
        for p in pieces
    ]
    return [start, *deltas, {"type": "content_block_stop", "index": index}]


def tool_events(pieces: list[str], *, index: int = 0, name: str = "lookup") -> list[dict[str, Any]]:
    """The content events of one tool_use block whose input JSON arrives as ``pieces``."""
    block = {"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": {}}
    deltas = [
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "input_json_delta", "partial_json": p},
        }
        for p in pieces
    ]
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *deltas,
        {"type": "content_block_stop", "index": index},
    ]


def thinking_events(pieces: list[str], *, index: int = 0) -> list[dict[str, Any]]:
    """The content events of one thinking block (its signature arrives last, as the API sends it)."""
    start = {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "thinking", "thinking": ""},
    }
    deltas = [
        {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": p}}
        for p in pieces
    ]
    signature = {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "signature_delta", "signature": "c2ln"},
    }
    return [start, *deltas, signature, {"type": "content_block_stop", "index": index}]


def message_events(content: list[dict[str, Any]], *, stop_reason: str = "end_turn") -> list[dict[str, Any]]:
    """A whole stream around ``content`` events: message_start, a ping, message_delta, message_stop."""
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }
    delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}}
    return [
        {"type": "message_start", "message": message},
        {"type": "ping"},
        *content,
        {**delta, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]


def frame(event: dict[str, Any]) -> bytes:
    """One SSE frame as the API writes it: the event name, then the JSON data."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


@dataclass
class FakeAnthropic:
    """What the upstream answers; tests change these fields between calls."""

    content: list[dict[str, Any]] = field(
        default_factory=lambda: [{"type": "text", "text": "Hello from Claude."}]
    )
    stop_reason: str = "end_turn"
    events: list[dict[str, Any]] | None = None  # a scripted stream; default: ``content`` as text events
    raw_stream: bytes | None = None  # the exact bytes of a stream (chunk-split tests)
    status: int = 200
    error: dict[str, Any] | None = None
    count_tokens: bool = True
    received: list[Received] = field(default_factory=list)

    def app(self) -> Starlette:
        """The ASGI app serving this fake."""
        return Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self._count, methods=["POST"]),
            ]
        )

    @property
    def last(self) -> Received:
        """The most recent request."""
        return self.received[-1]

    def reset(self) -> None:
        """Back to a plain text answer, nothing received."""
        fresh = FakeAnthropic()
        self.content, self.stop_reason, self.events, self.raw_stream = fresh.content, "end_turn", None, None
        self.status, self.error, self.count_tokens = 200, None, True
        self.received.clear()

    async def _record(self, request: Request) -> Any:
        body = json.loads(await request.body())
        self.received.append(Received(request.method, request.url.path, dict(request.headers), body))
        return body

    def _failure(self) -> Response | None:
        if self.status < 400:
            return None
        error = self.error or {"type": "error", "error": {"type": "api_error", "message": "upstream failed"}}
        return JSONResponse(error, status_code=self.status)

    async def _messages(self, request: Request) -> Response:
        body = await self._record(request)
        if (failure := self._failure()) is not None:
            return failure
        if body.get("stream"):
            return StreamingResponse(self._stream(), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": self.content,
                "stop_reason": self.stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 7},
            }
        )

    async def _stream(self) -> AsyncIterator[bytes]:
        if self.raw_stream is not None:
            yield self.raw_stream
            return
        events = self.events
        if events is None:
            texts = [b["text"] for b in self.content if b.get("type") == "text"]
            events = message_events(text_events(texts), stop_reason=self.stop_reason)
        for event in events:
            yield frame(event)

    async def _count(self, request: Request) -> Response:
        body = await self._record(request)
        if not self.count_tokens:
            error = {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}
            return JSONResponse(error, status_code=404)
        if (failure := self._failure()) is not None:
            return failure
        return JSONResponse({"input_tokens": len(json.dumps(body["messages"])) // 4})

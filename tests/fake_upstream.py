"""A scriptable fake OpenAI-compatible upstream (a Starlette app) that records what it receives."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Received:
    """One request as the upstream saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeUpstream:
    """What the upstream answers; tests change these fields between calls."""

    reply: str = "Hello! How can I help you today?"
    tool_arguments: str | None = None
    status: int = 200
    error: dict[str, Any] | None = None
    raw_body: bytes | None = None
    stream_pieces: list[str] | None = None
    stream_delay_s: float = 0.0
    models: list[str] = field(default_factory=lambda: ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"])
    received: list[Received] = field(default_factory=list)
    streams_closed: int = 0
    streams_finished: int = 0

    def app(self) -> Starlette:
        """The ASGI app serving this fake."""
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    @property
    def last(self) -> Received:
        """The most recent request."""
        return self.received[-1]

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.received.append(Received(request.method, request.url.path, dict(request.headers), body))
        return body

    def _failure(self) -> Response | None:
        if self.raw_body is not None:
            return Response(self.raw_body, status_code=self.status, media_type="text/plain")
        if self.status >= 400:
            error = self.error or {
                "error": {"message": "upstream failed", "type": "server_error", "code": None}
            }
            return JSONResponse(error, status_code=self.status)
        return None

    async def _chat(self, request: Request) -> Response:
        body = await self._record(request)
        if (failure := self._failure()) is not None:
            return failure
        if body.get("stream"):
            return StreamingResponse(self._chat_stream(body), media_type="text/event-stream")
        n = int(body.get("n") or 1)
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [self._chat_choice(i) for i in range(n)],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
            }
        )

    def _chat_choice(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.reply, "refusal": None}
        if self.tool_arguments is not None:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": self.tool_arguments},
                }
            ]
        finish = "tool_calls" if self.tool_arguments is not None else "stop"
        return {"index": index, "message": message, "finish_reason": finish, "logprobs": None}

    async def _chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": body["model"],
        }
        pieces = self.stream_pieces if self.stream_pieces is not None else [self.reply]
        n = int(body.get("n") or 1)
        try:
            for i in range(n):
                yield _sse({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}}]})
            for piece in pieces:
                if self.stream_delay_s:
                    await asyncio.sleep(self.stream_delay_s)
                for i in range(n):
                    yield _sse(
                        {
                            **base,
                            "choices": [{"index": i, "delta": {"content": piece}, "finish_reason": None}],
                        }
                    )
            for i in range(n):
                yield _sse({**base, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "prompt_tokens": 5,
                    "completion_tokens": len(pieces),
                    "total_tokens": 5 + len(pieces),
                }
                yield _sse({**base, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"
            self.streams_finished += 1
        finally:
            self.streams_closed += 1

    async def _completions(self, request: Request) -> Response:
        body = await self._record(request)
        if (failure := self._failure()) is not None:
            return failure
        return JSONResponse(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "text": self.reply, "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
            }
        )

    async def _responses(self, request: Request) -> Response:
        body = await self._record(request)
        if (failure := self._failure()) is not None:
            return failure
        return JSONResponse(
            {
                "id": "resp_fake",
                "object": "response",
                "created_at": int(time.time()),
                "status": "completed",
                "model": body["model"],
                "output": [
                    {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": self.reply, "annotations": []}],
                    }
                ],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": {
                    "input_tokens": 5,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 7,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 12,
                },
            }
        )

    async def _embeddings(self, request: Request) -> Response:
        body = await self._record(request)
        if (failure := self._failure()) is not None:
            return failure
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                    for i in range(len(inputs))
                ],
                "model": body["model"],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        )

    async def _models(self, request: Request) -> Response:
        await self._record(request)
        if (failure := self._failure()) is not None:
            return failure
        data = [{"id": m, "object": "model", "created": 1, "owned_by": "fake"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()

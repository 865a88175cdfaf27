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
    delay_s: float = 0.0  # before answering any request (keeps requests in flight)
    # Streaming scripts (chat, completions, responses): per-choice pieces, tool-call argument pieces, and a
    # way to break the stream after ``stream_break_after`` pieces: "abort" (connection cut mid-body),
    # "truncate" (clean end, no finish / [DONE] / response.completed) or "invalid_json".
    stream_choice_pieces: dict[int, list[str]] | None = None
    stream_tool_pieces: list[str] | None = None
    stream_break: str | None = None
    stream_break_after: int = 0
    stream_logprobs: bool = False
    stream_started: int = 0
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
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
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
        if self.stream_choice_pieces is not None or self.stream_tool_pieces is not None or self.stream_break:
            async for frame in self._scripted_stream(body, chat=True):
                yield frame
            return
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
        if body.get("stream"):
            return StreamingResponse(self._scripted_stream(body, chat=False), media_type="text/event-stream")
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
        if body.get("stream"):
            return StreamingResponse(self._responses_stream(body), media_type="text/event-stream")
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

    # --- scripted streams (chat with tools / per-choice pieces / breaks, completions, responses) ------

    def _pieces_for(self, index: int) -> list[str]:
        if self.stream_choice_pieces is not None and index in self.stream_choice_pieces:
            return self.stream_choice_pieces[index]
        return self.stream_pieces if self.stream_pieces is not None else [self.reply]

    async def _pace(self, sent: int) -> bytes | None:
        """Sleep between pieces; the frame (or exception) that breaks the stream after enough pieces."""
        if self.stream_delay_s:
            await asyncio.sleep(self.stream_delay_s)
        if not self.stream_break or sent < self.stream_break_after:
            return None
        if self.stream_break == "abort":
            raise ConnectionAbortedError("fake upstream cut the stream")
        return b"data: {not json\n\n" if self.stream_break == "invalid_json" else b""

    async def _scripted_stream(self, body: dict[str, Any], *, chat: bool) -> AsyncIterator[bytes]:
        self.stream_started += 1
        base = {
            "id": "chatcmpl-fake" if chat else "cmpl-fake",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": 1,
            "model": body["model"],
            "system_fingerprint": "fp_fake",
        }
        n = int(body.get("n") or 1)
        tools = chat and self.stream_tool_pieces is not None
        events: list[dict[str, Any]] = []
        if chat:
            first: dict[str, Any] = {"role": "assistant", "content": None if tools else ""}
            if tools:
                call = {"index": 0, "id": "call_1", "type": "function"}
                first["tool_calls"] = [{**call, "function": {"name": "lookup", "arguments": ""}}]
            events += [
                {"index": i, "delta": first, "logprobs": None, "finish_reason": None} for i in range(n)
            ]
        scripts = [(self.stream_tool_pieces or []) if tools else self._pieces_for(i) for i in range(n)]
        for k in range(max(map(len, scripts))):
            for i, pieces in enumerate(scripts):
                if k < len(pieces):
                    events.append(self._piece_choice(i, pieces[k], chat=chat, tools=tools))
        finish = "tool_calls" if tools else "stop"
        ends = [
            {"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}
            if chat
            else {"index": i, "text": "", "logprobs": None, "finish_reason": finish}
            for i in range(n)
        ]
        try:
            sent = 0
            for choice in events:
                if (broken := await self._pace(sent)) is not None:
                    yield broken
                    return
                sent += 1 if (choice.get("delta") or {}).get("role") is None else 0
                yield _sse({**base, "choices": [choice]})
            for choice in ends:
                yield _sse({**base, "choices": [choice]})
            if (body.get("stream_options") or {}).get("include_usage"):
                tokens = sum(map(len, scripts))
                usage = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}
                yield _sse({**base, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"
            self.streams_finished += 1
        finally:
            self.streams_closed += 1

    def _piece_choice(self, index: int, piece: str, *, chat: bool, tools: bool) -> dict[str, Any]:
        if not chat:
            return {"index": index, "text": piece, "logprobs": None, "finish_reason": None}
        call = {"index": 0, "function": {"arguments": piece}}
        delta = {"tool_calls": [call]} if tools else {"content": piece}
        logprobs = None
        if self.stream_logprobs:
            token = {"token": piece, "logprob": -0.5, "bytes": list(piece.encode()), "top_logprobs": []}
            logprobs = {"content": [token], "refusal": None}
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}

    async def _responses_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        self.stream_started += 1
        pieces = self._pieces_for(0)
        text = "".join(pieces)
        response = {
            "id": "resp_fake",
            "object": "response",
            "created_at": 1,
            "status": "in_progress",
            "model": body["model"],
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "temperature": None,
            "top_p": None,
        }
        msg = {"id": "msg_fake", "type": "message", "role": "assistant", "status": "in_progress"}
        msg["content"] = []
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        ids = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
        done_part = {**part, "text": text}
        done_msg = {**msg, "status": "completed", "content": [done_part]}
        head = [
            {"type": "response.created", "response": response},
            {"type": "response.in_progress", "response": response},
            {"type": "response.output_item.added", "output_index": 0, "item": msg},
            {"type": "response.content_part.added", **ids, "part": part},
        ]
        deltas = [{"type": "response.output_text.delta", **ids, "delta": p, "logprobs": []} for p in pieces]
        usage = {
            "input_tokens": 5,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": len(pieces),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 5 + len(pieces),
        }
        tail = [
            {"type": "response.output_text.done", **ids, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **ids, "part": done_part},
            {"type": "response.output_item.done", "output_index": 0, "item": done_msg},
            {
                "type": "response.completed",
                "response": {**response, "status": "completed", "output": [done_msg], "usage": usage},
            },
        ]
        try:
            seq = 0
            for sent, event in enumerate([*head, *deltas]):
                if event in deltas and (broken := await self._pace(sent - len(head))) is not None:
                    yield broken
                    return
                yield _typed_sse({**event, "sequence_number": seq})
                seq += 1
            for event in tail:
                yield _typed_sse({**event, "sequence_number": seq})
                seq += 1
            self.streams_finished += 1
        finally:
            self.streams_closed += 1


def _typed_sse(obj: dict[str, Any]) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()

"""The fuzz benchmark's fake OpenAI upstream: valid answers for every endpoint (JSON or a stream), and a
misbehaving one when the request's model is a ``case:<name>`` (malformed, huge, echoing the key).

The model name picks the case, so the upstream holds no state shared with the benchmark's driver.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MIB = 1024 * 1024
SAFE_WORDS = "The river runs quietly past the old mill. "


def _chat(body: dict[str, Any], text: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text, "refusal": None}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    return {"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice]}


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
    return {"id": "cmpl-f", "object": "text_completion", "created": 1, "model": "m", "choices": [choice]}


def _response(body: dict[str, Any], text: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"id": "msg_f", "type": "message", "role": "assistant", "status": "completed", "content": [part]}
    return {
        "id": "resp_f",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "m",
        "output": [item],
    }


def _embedding(body: dict[str, Any], text: str) -> dict[str, Any]:
    data = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]
    return {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1}}


def _sse(obj: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


def _chat_stream(pieces: list[str]) -> bytes:
    chunks = [
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
        for p in pieces
    ]  # fmt: skip
    end = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}  # fmt: skip
    return b"".join(_sse(c) for c in [*chunks, end]) + b"data: [DONE]\n\n"


def _completion_stream(pieces: list[str]) -> bytes:
    chunks = [
        {"id": "c", "object": "text_completion", "created": 1, "model": "m",
         "choices": [{"index": 0, "text": p, "finish_reason": None}]}
        for p in pieces
    ]  # fmt: skip
    return b"".join(_sse(c) for c in chunks) + b"data: [DONE]\n\n"


def _responses_stream(pieces: list[str]) -> bytes:
    done = _response({}, "".join(pieces))
    started = {**done, "status": "in_progress", "output": []}
    events = [_sse({"type": "response.created", "response": started}, "response.created")]
    events += [
        _sse({"type": "response.output_text.delta", "item_id": "msg_f", "output_index": 0, "content_index": 0,
              "delta": p}, "response.output_text.delta")
        for p in pieces
    ]  # fmt: skip
    events.append(_sse({"type": "response.completed", "response": done}, "response.completed"))
    return b"".join(events)


JSON_ANSWERS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "chat/completions": _chat,
    "completions": _completion,
    "responses": _response,
    "embeddings": _embedding,
}
STREAMS: dict[str, Callable[[list[str]], bytes]] = {
    "chat/completions": _chat_stream,
    "completions": _completion_stream,
    "responses": _responses_stream,
}

# case name -> what the upstream sends instead of a valid answer (status, content type, body)
RAW_CASES: dict[str, tuple[int, str, bytes]] = {
    "not-json": (200, "text/html", b"<html><body>Bad gateway</body></html>"),
    "nan": (200, "application/json", b'{"id": "x", "object": "chat.completion", "choices": NaN}'),
    "out-of-range": (200, "application/json", b'{"id": "x", "object": "chat.completion", "created": 1e400}'),
    "lone-surrogate": (
        200,
        "application/json",
        b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "\\ud800"}}]}',
    ),  # fmt: skip
    "array": (200, "application/json", b"[1, 2, 3]"),
    "wrong-shape": (200, "application/json", b'{"id": "x", "object": "chat.completion", "choices": "none"}'),
    "text-in-object": (
        200,
        "application/json",
        b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", '
        b'"content": {"text": "hi"}}}]}',
    ),  # fmt: skip
    "no-event-stream": (200, "application/json", json.dumps(_chat({}, "ok")).encode()),
}


def _case_answer(case: str, endpoint: str, request: Request) -> Response:
    """The misbehaving answer for ``case:<case>``."""
    if case in RAW_CASES:
        status, media, body = RAW_CASES[case]
        return Response(body, status_code=status, media_type=media)
    if case == "echo-key":  # what OpenAI does with a bad key, on a status the proxy relays
        key = request.headers.get("authorization", "").partition(" ")[2]
        message = f"Rate limit reached for key {key[:14]}****{key[-4:]} in organization org-{key[3:12]}."
        return JSONResponse(
            {"error": {"message": message, "type": "requests", "code": None}}, status_code=429
        )
    size = {"answer-5mb": 5 * MIB, "answer-20mb": 20 * MIB, "event-900kb": 900 * 1024, "event-2mb": 2 * MIB}[
        case
    ]
    text = SAFE_WORDS * (size // len(SAFE_WORDS))
    if case.startswith("event-"):
        return Response(STREAMS[endpoint](["Hello. ", text]), media_type="text/event-stream")
    return JSONResponse(JSON_ANSWERS[endpoint]({}, text))


async def _answer(request: Request) -> Response:
    endpoint = request.url.path.removeprefix("/v1/")
    body = json.loads(await request.body() or b"{}")
    model = body.get("model") if isinstance(body, dict) else None
    if isinstance(model, str) and model.startswith("case:"):
        return _case_answer(model.removeprefix("case:"), endpoint, request)
    if body.get("stream") is True and endpoint in STREAMS:
        return Response(STREAMS[endpoint](["Hello! ", "How can I help?"]), media_type="text/event-stream")
    return JSONResponse(JSON_ANSWERS[endpoint](body, "Hello! How can I help?"))


async def _models(request: Request) -> Response:
    data = [{"id": m, "object": "model", "created": 1, "owned_by": "fake"} for m in ("gpt-4o-mini", "gpt-4o")]
    return JSONResponse({"object": "list", "data": data})


def make_app() -> Starlette:
    """The fake upstream's ASGI app (serve it on loopback)."""
    paths = [f"/v1/{p}" for p in JSON_ANSWERS]
    return Starlette(
        routes=[
            *(Route(p, _answer, methods=["POST"]) for p in paths),
            Route("/v1/models", _models, methods=["GET"]),
        ]
    )

"""A tiny OpenAI-compatible mock upstream for trying crest-proxy without an API key (examples/compose.yaml).

It echoes the last user message back ("You said: …"), streaming or not, so outbound screening can be
seen too: with the demo model, a prompt containing "kaboom" is blocked inbound; with inbound set to
``log``, the echoed answer is blocked outbound. Not for production.

    python examples/mock_upstream.py [--port 8000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODELS = ["gpt-4o-mini", "gpt-4o"]


def answer_for(body: dict[str, Any]) -> str:
    """The echo of the last user message."""
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    if isinstance(content, list):  # multimodal parts: echo the text ones
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return f"You said: {content}"


async def chat(request: Request) -> Response:
    """``POST /v1/chat/completions``."""
    body = await request.json()
    text, model = answer_for(body), body.get("model", MODELS[0])
    if body.get("stream"):
        return StreamingResponse(_chunks(text, model), media_type="text/event-stream")
    message = {"role": "assistant", "content": text, "refusal": None}
    return JSONResponse(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
            "usage": {
                "prompt_tokens": 1,
                "completion_tokens": len(text.split()),
                "total_tokens": 1 + len(text.split()),
            },
        }
    )


async def _chunks(text: str, model: str) -> AsyncIterator[bytes]:
    base = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    words = text.split(" ")
    for i, word in enumerate(words):
        delta = {"content": word + (" " if i < len(words) - 1 else "")}
        yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    yield b"data: [DONE]\n\n"


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


async def models(request: Request) -> Response:
    """``GET /v1/models``."""
    return JSONResponse(
        {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 1, "owned_by": "mock"} for m in MODELS],
        }
    )


def main() -> None:
    """Serve the mock."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")  # inside its container; compose keeps it off the host
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app = Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)]
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

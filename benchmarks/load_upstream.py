#!/usr/bin/env python
"""The load benchmark's fake OpenAI upstream: its own process, aiohttp, fixed answers, paced streams.

    python benchmarks/load_upstream.py --port 9000 --tokens 60 --interval-ms 20

aiohttp rather than uvicorn: its C HTTP parser keeps the upstream's share of the two shared cores small,
so the proxies' numbers are less distorted. Every answer is serialised once at start-up; a request costs
a JSON parse of its body and the writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from typing import Any

MODEL = "bench-model"
# Three sentences of ordinary, safe prose: the streaming hold-back releases text at sentence ends.
_SENTENCES = (
    "The river runs quietly past the old mill on its way to the sea.",
    "Farmers bring apples and pears to the market every Saturday morning.",
    "A light rain is expected tonight, and tomorrow should be bright and calm.",
)


def reply_pieces(tokens: int) -> list[str]:
    """``tokens`` word pieces (a leading space each, like BPE tokens) cycling through safe sentences."""
    words = " ".join(_SENTENCES).split(" ")
    return [(" " if i else "") + words[i % len(words)] for i in range(tokens)]


def reply_text(tokens: int) -> str:
    """The whole answer ``reply_pieces(tokens)`` makes: what a client must receive, streamed or not."""
    return "".join(reply_pieces(tokens))


@dataclass(frozen=True)
class Answers:
    """The upstream's pre-serialised answers: one JSON body, and the SSE frames of one stream."""

    body: bytes
    head: bytes
    pieces: tuple[bytes, ...]
    tail: bytes
    interval_s: float


def build_answers(tokens: int, interval_s: float) -> Answers:
    """Serialise the non-streamed completion and the stream's frames once."""
    text = reply_text(tokens)
    message = {"role": "assistant", "content": text, "refusal": None}
    usage = {"prompt_tokens": 40, "completion_tokens": tokens, "total_tokens": 40 + tokens}
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": usage,
    }
    chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": MODEL}

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n".encode()

    return Answers(
        body=json.dumps(body).encode(),
        head=frame({"role": "assistant", "content": ""}),
        pieces=tuple(frame({"content": p}) for p in reply_pieces(tokens)),
        tail=frame({}, "stop") + b"data: [DONE]\n\n",
        interval_s=interval_s,
    )


def make_app(answers: Answers) -> Any:
    """The aiohttp application answering POST /v1/chat/completions (and GET /health for readiness)."""
    from aiohttp import web

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=answers.body, content_type="application/json")
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(answers.head)
        for piece in answers.pieces:
            await asyncio.sleep(answers.interval_s)
            await response.write(piece)
        await response.write(answers.tail)
        await response.write_eof()
        return response

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    """Serve on 127.0.0.1 until terminated."""
    from aiohttp import web

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=60, help="pieces per answer (streamed: one per frame)")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="pause before each streamed piece")
    args = parser.parse_args()
    app = make_app(build_answers(args.tokens, args.interval_ms / 1000.0))
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

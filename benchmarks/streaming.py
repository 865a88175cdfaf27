#!/usr/bin/env python
"""What the streaming hold-back costs: time to first token and total time, through crest-proxy vs direct.

    python benchmarks/streaming.py                       # 200 tokens at 50 tokens/s, 3 runs per row
    python benchmarks/streaming.py --tokens 400 --rate 100 --runs 5

A fake OpenAI upstream on loopback streams ``--tokens`` word tokens at ``--rate`` tokens/s (sentences of
8-24 words, like chat answers). Each row streams the same answer straight from the upstream or through a
running crest-proxy (real uvicorn, policy ``outbound.action: log`` so every window is screened and none
is blocked), once with the tiny trigger model (proxy and hold-back overhead alone) and once with a
generated CREST-shaped model (``build_random_model(shape="xlm-roberta-base")``, ONNX int8: what
CREST-Base costs). Models and artifacts are cached under ``--workdir``. Progress goes to stderr, the
markdown table to stdout. The machine may be shared: run it twice before trusting small differences.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.support.servers import serve  # noqa: E402  (the same loopback server the tests use)

WORDS = [
    "the",
    "a",
    "model",
    "answer",
    "river",
    "city",
    "light",
    "window",
    "garden",
    "morning",
    "question",
    "reason",
    "simple",
    "careful",
    "quiet",
    "bright",
    "history",
    "science",
    "music",
    "travel",
    "people",
    "country",
    "story",
    "water",
    "mountain",
    "language",
    "number",
    "system",
    "small",
    "large",
    "early",
    "later",
    "often",
    "always",
    "never",
    "because",
    "while",
    "after",
    "before",
    "during",
    "between",
    "through",
]


@dataclass(frozen=True)
class Run:
    """One streamed answer as the client saw it."""

    ttft_ms: float
    total_ms: float


@dataclass(frozen=True)
class Row:
    """One row of the table: a path (direct or proxied, with which model) and its runs."""

    path: str
    model: str
    runs: tuple[Run, ...]
    windows: float | None = None
    max_holdback_chars: int | None = None
    max_holdback_ms: float | None = None

    @property
    def ttft_ms(self) -> float:
        """Median time to first token."""
        return statistics.median(r.ttft_ms for r in self.runs)

    @property
    def total_ms(self) -> float:
        """Median time to the end of the stream."""
        return statistics.median(r.total_ms for r in self.runs)


def answer_tokens(count: int, seed: int = 7) -> list[str]:
    """``count`` word tokens forming sentences of 8-24 words (each token carries its leading space)."""
    rng = random.Random(seed)
    tokens: list[str] = []
    while len(tokens) < count:
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 24))]
        words[0] = words[0].capitalize()
        words[-1] += rng.choice([".", ".", ".", "?", "!"])
        tokens += [(" " if tokens else "") + w if i == 0 else " " + w for i, w in enumerate(words)]
    return tokens[:count]


def upstream_app(tokens: list[str], rate: float) -> Any:
    """A fake chat-completions upstream streaming ``tokens`` on a fixed schedule of ``rate`` tokens/s."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        return f"data: {json.dumps({**body, 'choices': [choice]})}\n\n".encode()

    async def events() -> AsyncIterator[bytes]:
        started = time.perf_counter()
        yield chunk({"role": "assistant", "content": ""})
        for i, token in enumerate(tokens):
            # An absolute schedule: the upstream's pace does not drift with event-loop delays.
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
            yield chunk({"content": token})
        yield chunk({}, "stop")
        yield b"data: [DONE]\n\n"

    async def chat(request: Request) -> StreamingResponse:
        await request.body()
        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def stream_once(base_url: str, key: str) -> Run:
    """Stream one answer; time to the first non-empty content delta, and to the end."""
    import httpx
    from httpx_sse import aconnect_sse

    body = {"model": "m", "messages": [{"role": "user", "content": "Tell me a story."}], "stream": True}
    ttft = None
    started = time.perf_counter()
    async with (
        httpx.AsyncClient(timeout=60) as client,
        aconnect_sse(
            client,
            "POST",
            f"{base_url}/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
        ) as source,
    ):
        async for event in source.aiter_sse():
            if event.data == "[DONE]":
                break
            choices = json.loads(event.data).get("choices") or [{}]
            if ttft is None and (choices[0].get("delta") or {}).get("content"):
                ttft = time.perf_counter() - started
    total = time.perf_counter() - started
    if ttft is None:
        raise RuntimeError("the stream carried no content")
    return Run(round(ttft * 1000, 1), round(total * 1000, 1))


def proxy_row(name: str, classifier: Any, upstream_url: str, args: argparse.Namespace) -> Row:
    """Stream ``args.runs`` answers through a crest-proxy that screens with ``classifier``."""
    import yaml

    from crest_proxy.audit.sink import MemoryAuditSink
    from crest_proxy.policy.files import load_policies
    from crest_proxy.server.app import create_app
    from crest_proxy.settings import ServerSettings

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        policy = {
            "tenant": "bench",
            "keys": ["env:BENCH_KEY"],
            "upstream": {"base_url": f"{upstream_url}/v1"},
            "inbound": {"action": "log"},
            "outbound": {
                "action": "log",
                "stream": {"window_chars": args.window, "context_chars": args.context},
            },
        }
        (Path(tmp) / "bench.yaml").write_text(yaml.safe_dump(policy))
        policies = load_policies(Path(tmp), environ={"BENCH_KEY": "sk-bench"})
        audit = MemoryAuditSink()
        settings = ServerSettings(policies_dir=Path(tmp), policy_poll_s=0)
        app = create_app(settings, policies=policies, classifier=classifier, audit=audit)
        url = stack.enter_context(serve(app))
        asyncio.run(stream_once(f"{url}/v1", "sk-bench"))  # warm-up: connections, first inference
        audit.records.clear()
        runs = tuple(asyncio.run(stream_once(f"{url}/v1", "sk-bench")) for _ in range(args.runs))
    streams = [r.extra for r in audit.records if r.direction == "outbound"]
    return Row(
        "proxy",
        name,
        runs,
        windows=statistics.mean(float(s["stream_windows"]) for s in streams),
        max_holdback_chars=max(int(s["max_holdback_chars"]) for s in streams),
        max_holdback_ms=max(float(s["max_holdback_ms"]) for s in streams),
    )


def load_models(args: argparse.Namespace) -> dict[str, Callable[[], Any]]:
    """Loaders of the two classifiers, each building and caching its checkpoint on first use."""
    from crest_proxy.classifier import ClassifierSettings, load_classifier
    from crest_proxy.classifier.synthetic import build_random_model, build_trigger_model

    def cached(directory: Path, build: Callable[[Path], Any]) -> Path:
        marker = directory / ".complete"
        if not marker.exists():
            _progress(f"generating {directory} …")
            build(directory)
            marker.write_text("ok\n")
        return directory

    def trigger() -> Any:
        model = cached(args.workdir / "streaming-trigger", build_trigger_model)
        return load_classifier(
            ClassifierSettings(model=str(model), backend="torch", quantize=False, offline=True)
        )

    def crest() -> Any:
        model = cached(
            args.workdir / "xlm-roberta-base-random",
            lambda d: build_random_model(d, shape="xlm-roberta-base"),
        )
        settings = ClassifierSettings(
            model=str(model),
            backend="onnx",
            quantize=True,
            cache_dir=args.workdir / "artifacts",
            offline=True,
        )
        return load_classifier(settings, progress=_progress)

    return {"trigger (tiny, torch)": trigger, "CREST-shaped (xlm-r-base, onnx int8)": crest}


def table(rows: list[Row], args: argparse.Namespace) -> str:
    """The markdown table (added figures are against the direct row)."""
    direct = rows[0]
    lines = [
        f"{args.tokens} tokens at {args.rate:g} tokens/s, window_chars={args.window}, "
        f"context_chars={args.context}, median of {args.runs} runs",
        "",
        "| path | model | TTFT ms | added TTFT ms | total ms | added total ms | windows/stream "
        "| max hold-back chars | max hold-back ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        added = row is not direct
        lines.append(
            f"| {row.path} | {row.model} | {row.ttft_ms:.0f} | "
            f"{row.ttft_ms - direct.ttft_ms:.0f} | {row.total_ms:.0f} | "
            f"{row.total_ms - direct.total_ms:.0f} | "
            + (
                f"{row.windows:.0f} | {row.max_holdback_chars} | {row.max_holdback_ms:.0f} |"
                if added
                else "– | – | – |"
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every row and print the table."""
    args = parse_args(argv)
    tokens = answer_tokens(args.tokens)
    rows: list[Row] = []
    with serve(upstream_app(tokens, args.rate)) as upstream_url:
        _progress("direct …")
        asyncio.run(stream_once(f"{upstream_url}/v1", "none"))
        rows.append(
            Row(
                "direct",
                "–",
                tuple(asyncio.run(stream_once(f"{upstream_url}/v1", "none")) for _ in range(args.runs)),
            )
        )
        for name, load in load_models(args).items():
            _progress(f"proxy with {name} …")
            classifier = load()
            try:
                rows.append(proxy_row(name, classifier, upstream_url, args))
            finally:
                classifier.close()
    print(table(rows, args))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=200, help="tokens per streamed answer")
    p.add_argument("--rate", type=float, default=50.0, help="upstream tokens per second")
    p.add_argument("--runs", type=int, default=3, help="streams per row (after one warm-up)")
    p.add_argument("--window", type=int, default=400, help="outbound.stream.window_chars")
    p.add_argument("--context", type=int, default=200, help="outbound.stream.context_chars")
    p.add_argument(
        "--workdir", type=Path, default=REPO / ".cache" / "bench", help="generated models/artifacts"
    )
    return p.parse_args(argv)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

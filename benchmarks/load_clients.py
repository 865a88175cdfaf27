"""The load generator: N concurrent clients, each sending chat completions back to back for a while.

aiohttp, not httpx or the OpenAI SDK: on two shared cores the load generator competes with the servers it
measures, and aiohttp's C-accelerated HTTP parsing costs the least CPU per request and per SSE line.
Every answer is checked: HTTP 200, and the assistant text (joined from the stream's deltas, with the
final ``[DONE]``) equal to what the fake upstream sent; anything else counts as an error.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# A prompt of ordinary, safe text (about 60 tokens), so the inbound screen has something to read.
PROMPT = (
    "Please write a short, friendly paragraph about a quiet river town: the mill, the Saturday market, "
    "and tomorrow's weather. Keep it calm and simple, in plain English, three sentences at most."
)


@dataclass(frozen=True)
class Target:
    """Where the clients send requests: a base URL (``…/v1`` is appended), the API key and a label."""

    name: str
    url: str
    key: str


@dataclass(frozen=True)
class Outcome:
    """One request: when it started and took, its time to first content (streams), and its error if any."""

    started: float
    latency_s: float
    ttft_s: float | None
    error: str | None


@dataclass(frozen=True)
class Load:
    """What to send: streamed or not, how many clients, for how long, and the answer to expect."""

    stream: bool
    concurrency: int
    duration_s: float
    expected: str
    timeout_s: float = 120.0


def request_body(stream: bool) -> bytes:
    """The chat completion request every client sends."""
    body: dict[str, Any] = {
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": 200,
        "stream": stream,
    }
    return json.dumps(body).encode()


async def drive(
    target: Target, load: Load, on_outcome: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """Run ``load.concurrency`` clients against ``target`` for ``load.duration_s``; every request's outcome.

    A request started before the deadline is allowed to finish (bounded by ``load.timeout_s``).
    """
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=load.timeout_s)
    headers = {"authorization": f"Bearer {target.key}", "content-type": "application/json"}
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + load.duration_s
    body = request_body(load.stream)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def client() -> None:
            while time.perf_counter() < deadline:
                outcome = await _one(session, target.url + "/v1/chat/completions", body, load)
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)

        await asyncio.gather(*(client() for _ in range(load.concurrency)))
    return outcomes


async def _one(session: Any, url: str, body: bytes, load: Load) -> Outcome:
    started = time.perf_counter()
    try:
        async with session.post(url, data=body) as response:
            if response.status != 200:
                await response.read()
                return Outcome(started, time.perf_counter() - started, None, f"HTTP {response.status}")
            if load.stream:
                text, ttft, done = await _read_stream(response, started)
            else:
                text, ttft, done = _message_text(await response.json()), None, True
    except (TimeoutError, asyncio.TimeoutError):
        return Outcome(started, time.perf_counter() - started, None, "timeout")
    except Exception as exc:  # any transport failure is an error of this request, not of the benchmark
        return Outcome(started, time.perf_counter() - started, None, type(exc).__name__)
    latency = time.perf_counter() - started
    return Outcome(started, latency, ttft, _check(text, done, load.expected))


async def _read_stream(response: Any, started: float) -> tuple[str, float | None, bool]:
    """The streamed assistant text, the time its first non-empty piece arrived, and whether [DONE] came."""
    parts: list[str] = []
    ttft: float | None = None
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return "".join(parts), ttft, True
        for choice in json.loads(data).get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                ttft = time.perf_counter() - started if ttft is None else ttft
                parts.append(piece)
    return "".join(parts), ttft, False


def _message_text(body: Any) -> str:
    try:
        return str(body["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        return ""


def _check(text: str, done: bool, expected: str) -> str | None:
    if not done:
        return "stream ended without [DONE]"
    return None if text == expected else "answer text differs from the upstream's"


@dataclass(frozen=True)
class Summary:
    """Latency percentiles (ms), throughput and errors of one target under one load."""

    requests: int
    errors: int
    error_kinds: dict[str, int]
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    ttft_p99_ms: float | None


def summarize(outcomes: Sequence[Outcome], seconds: float) -> Summary:
    """Percentiles over the successful requests; throughput = successful requests ÷ ``seconds``."""
    good = [o for o in outcomes if o.error is None]
    latencies = [o.latency_s * 1e3 for o in good]
    ttfts = [o.ttft_s * 1e3 for o in good if o.ttft_s is not None]
    kinds = Counter(o.error for o in outcomes if o.error is not None)
    return Summary(
        requests=len(good),
        errors=len(outcomes) - len(good),
        error_kinds=dict(kinds),
        throughput_rps=len(good) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50),
        p95_ms=percentile(latencies, 0.95),
        p99_ms=percentile(latencies, 0.99),
        ttft_p50_ms=percentile(ttfts, 0.50) if ttfts else None,
        ttft_p95_ms=percentile(ttfts, 0.95) if ttfts else None,
        ttft_p99_ms=percentile(ttfts, 0.99) if ttfts else None,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by linear interpolation (NaN when there are none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

"""Server-sent events in and out: decode the upstream's event stream, encode the frames we send.

Decoding is httpx-sse's: it reads ``response.aiter_text()``, whose incremental UTF-8 decoder keeps a
character split across network reads whole, and its line decoder follows the SSE spec (CR, LF, CRLF),
so a chunk boundary can never cut an event or a character in two.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

DONE = b"data: [DONE]\n\n"


class StreamBroken(Exception):
    """The upstream's event stream cannot be relayed further (invalid JSON, unexpected shape)."""


def is_event_stream(response: httpx.Response) -> bool:
    """True when the upstream answered with ``text/event-stream``."""
    media_type = str(response.headers.get("content-type", "")).partition(";")[0].strip().lower()
    return media_type == "text/event-stream"


async def events(response: httpx.Response) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of an upstream ``text/event-stream`` response, as they arrive."""
    source = EventSource(response).aiter_sse()
    try:
        async for event in source:
            yield event
    finally:
        await source.aclose()


def json_of(event: ServerSentEvent) -> dict[str, Any]:
    """The JSON object an event carries; ``StreamBroken`` when it carries anything else."""
    try:
        value = json.loads(event.data)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise StreamBroken(f"the upstream sent an event that is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise StreamBroken("the upstream sent an event whose JSON is not an object")
    return value


def frame(data: str, event: str | None = None) -> bytes:
    """One SSE frame; ``event`` is written only when it is not the default ``message``."""
    head = f"event: {event}\n" if event and event != "message" else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}{body}\n".encode()


def json_frame(value: Mapping[str, Any], event: str | None = None) -> bytes:
    """One SSE frame carrying ``value`` as compact JSON."""
    return frame(json.dumps(value, ensure_ascii=False, separators=(",", ":")), event)


def raw_frame(event: ServerSentEvent) -> bytes:
    """An upstream event passed on unchanged."""
    return frame(event.data, event.event)

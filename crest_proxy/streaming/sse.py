"""Server-sent events in and out: decode the upstream's event stream, encode the frames we send.

Decoding is httpx-sse's: it reads ``response.aiter_text()``, whose incremental UTF-8 decoder keeps a
character split across network reads whole, and its line decoder follows the SSE spec (CR, LF, CRLF),
so a chunk boundary can never cut an event or a character in two.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import anyio
import httpx
from httpx_sse import EventSource, ServerSentEvent

DONE = b"data: [DONE]\n\n"


class StreamBroken(Exception):
    """The upstream's event stream cannot be relayed further (invalid JSON, unexpected shape)."""


class StreamStalled(httpx.ReadTimeout):
    """No complete event arrived within the idle limit (a timeout, whatever bytes did arrive)."""


def is_event_stream(response: httpx.Response) -> bool:
    """True when the upstream answered with ``text/event-stream``."""
    media_type = str(response.headers.get("content-type", "")).partition(";")[0].strip().lower()
    return media_type == "text/event-stream"


async def events(
    response: httpx.Response, *, idle_s: float | None = None
) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of an upstream ``text/event-stream`` response, as they arrive.

    ``idle_s`` bounds the wait for each next event. The transport's read timeout does not: an upstream
    that trickles a byte at a time, or sends only comments, never trips it.
    """
    source = EventSource(response).aiter_sse()
    try:
        while True:
            with anyio.move_on_after(idle_s) as waited:
                try:
                    event = await anext(source)
                except StopAsyncIteration:
                    return
            if waited.cancelled_caught:
                raise StreamStalled(f"The upstream sent no complete event for {idle_s:g}s.")
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

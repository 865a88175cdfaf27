"""Server-sent events out: the frames we send, and the JSON an upstream event carries.

Reading the upstream's event stream (httpx) is ``upstream.events``: this module imports no HTTP client, so
the stream dialects that use it stay importable without one (issue 12).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    from httpx_sse import ServerSentEvent

DONE = b"data: [DONE]\n\n"


class StreamBroken(Exception):
    """The upstream's event stream cannot be relayed further (invalid JSON, unexpected shape)."""


def is_event_stream(response: httpx.Response) -> bool:
    """True when the upstream answered with ``text/event-stream``."""
    media_type = str(response.headers.get("content-type", "")).partition(";")[0].strip().lower()
    return media_type == "text/event-stream"


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

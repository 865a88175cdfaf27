"""Reading an upstream's ``text/event-stream`` answer: the events as they arrive, with an idle limit.

Decoding is httpx-sse's: it reads ``response.aiter_text()``, whose incremental UTF-8 decoder keeps a
character split across network reads whole, and its line decoder follows the SSE spec (CR, LF, CRLF),
so a chunk boundary can never cut an event or a character in two. The frames we send are written by
``streaming.sse``, which imports no HTTP client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import httpx
from httpx_sse import EventSource, ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder  # the decoder EventSource uses, counted here


class StreamStalled(httpx.ReadTimeout):
    """No complete event arrived within the idle limit (a timeout, whatever bytes did arrive)."""


class EventTooLarge(Exception):
    """One upstream event grew past the size limit (it is not buffered any further)."""


async def events(
    response: httpx.Response, *, idle_s: float | None = None, max_event_chars: int | None = None
) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of an upstream ``text/event-stream`` response, as they arrive.

    ``idle_s`` bounds the wait for each next event. The transport's read timeout does not: an upstream
    that trickles a byte at a time, or sends only comments, never trips it. ``max_event_chars`` bounds
    one event's size (``EventTooLarge``): without it a 50 MB event was buffered whole (issue 14).
    """
    source = _capped(response, max_event_chars) if max_event_chars else EventSource(response).aiter_sse()
    try:
        while True:
            # asyncio's own deadline: anyio's cancel scope, entered once per event, cost about 4 % of the
            # instructions a relayed stream takes (issue 13's pass-through budget).
            deadline = asyncio.timeout(idle_s)
            try:
                async with deadline:
                    event = await anext(source)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not deadline.expired():
                    raise  # not our idle limit: something inside timed out on its own
                raise StreamStalled(f"The upstream sent no complete event for {idle_s:g}s.") from None
            yield event
    finally:
        await source.aclose()


async def _capped(response: httpx.Response, limit: int) -> AsyncGenerator[ServerSentEvent, None]:
    """httpx-sse's decoding, counting the characters of the event being assembled (its partial line too)."""
    lines, decoder = SSELineDecoder(), SSEDecoder()
    size = partial = 0  # characters of the current event's complete lines / of its unfinished last line
    async for text in response.aiter_text():
        for line in lines.decode(text):
            size += len(line)
            if size > limit:
                raise EventTooLarge(f"an event of the upstream's stream is over {limit} characters")
            event = decoder.decode(line.rstrip("\n"))
            if event is not None or not line:
                size = 0
            if event is not None:
                yield event
        cut = max(text.rfind("\n"), text.rfind("\r"))
        partial = len(text) - cut - 1 if cut >= 0 else partial + len(text)
        if size + partial > limit:
            raise EventTooLarge(f"an event of the upstream's stream is over {limit} characters")
    for line in lines.flush():
        event = decoder.decode(line.rstrip("\n"))
        if event is not None:
            yield event

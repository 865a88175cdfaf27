"""``stream: true``: open the upstream stream, relay its events screened, close it, audit what happened.

The upstream response is opened before the client gets a status line, so an upstream HTTP error is still
answered as JSON with its status. After that the relay owns the upstream response: it is closed when a
block ends the stream, when the stream ends, and when the client goes away (Starlette cancels the
response on ``http.disconnect``; a background task closes a relay that never got to run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from crest_proxy.errors import UpstreamError
from crest_proxy.screening.decision import AUDIT_UNAVAILABLE, Exchange, Outcome, StreamEnd
from crest_proxy.screening.guard import Screening
from crest_proxy.screening.holdback import StreamScreener
from crest_proxy.server.gateway import (
    ENDPOINTS,
    Call,
    Gateway,
    decide_call,
    forward,
    json_response,
    upstream_payload,
)
from crest_proxy.streaming import sse
from crest_proxy.streaming.choices import ChoiceStream, choice_count
from crest_proxy.streaming.dialect import Dialect
from crest_proxy.streaming.responses import ResponseStream
from crest_proxy.upstream import events as upstream_events
from crest_proxy.upstream import pool as upstream

__all__ = ["Relay", "choice_count", "stream_completion"]  # choice_count: its old home

log = logging.getLogger("crest_proxy.streaming")

# Closing the upstream and writing the audit record must finish even while the response task is being
# cancelled (client gone), but never hang a worker.
_CLEANUP_TIMEOUT_S = 5.0


async def stream_completion(gw: Gateway, call: Call, body: dict[str, Any], inbound: Screening) -> Response:
    """Forward a ``stream: true`` request and relay the upstream's events, screened, as SSE."""
    stack = AsyncExitStack()
    answer, _ = await forward(gw, call, inbound, lambda: _open(gw, call, body, stack))
    early = await early_answer_or_keep(stack, lambda: _early_answer(call, answer))
    if early is not None:
        return early
    screener = StreamScreener(gw.guard, call.policy)
    relay = Relay(gw, call, answer, stack, screener, _dialect(call, body, screener))
    return event_stream_response(relay, answer)


async def early_answer_or_keep(
    stack: AsyncExitStack, check: Callable[[], Awaitable[Response | None]]
) -> Response | None:
    """Run ``check`` on an upstream stream just opened: an early answer (an upstream error, a refusal) or a
    failure closes the stream held by ``stack``; ``None`` keeps it open for the relay."""
    try:
        early = await check()
    except BaseException:
        await stack.aclose()
        raise
    if early is not None:
        await stack.aclose()
    return early


def event_stream_response(
    relay: Relay, answer: httpx.Response, headers: Mapping[str, str] | None = None
) -> StreamingResponse:
    """The client's ``text/event-stream`` response for ``relay`` (upstream headers kept, no buffering)."""
    kept = upstream.forward_response_headers(answer.headers)
    return StreamingResponse(
        relay.frames(),
        media_type="text/event-stream",
        headers={
            **{k: v for k, v in kept.items() if k.lower() != "content-type"},
            "cache-control": "no-cache",
            "x-accel-buffering": "no",  # nginx and friends must not buffer what we already held back
            **(headers or {}),
        },
        background=BackgroundTask(relay.aclose),
    )


async def _open(gw: Gateway, call: Call, body: dict[str, Any], stack: AsyncExitStack) -> httpx.Response:
    client = await gw.upstreams.client_for(call.policy)
    headers = call.upstream_headers()  # the call's policy snapshot: a reload cannot swap the key mid-request
    headers["accept"] = "text/event-stream"
    return await stack.enter_async_context(
        upstream.open_stream(client, ENDPOINTS[call.endpoint], body, headers)
    )


async def _early_answer(call: Call, answer: httpx.Response) -> Response | None:
    """The JSON answer when the upstream did not start a stream (its error, passed through), else None."""
    if answer.status_code < 400 and sse.is_event_stream(answer):
        return None
    if answer.status_code < 400:
        raise UpstreamError("The upstream answered a streaming request without an event stream.")
    try:
        read = await upstream.read_answer(answer)  # size-capped, key pieces masked (issue 14)
    except httpx.HTTPError as exc:
        raise upstream.map_transport_error(exc) from exc
    relay = upstream.forward_response_headers(read.headers)
    payload = upstream_payload(read, secret=call.upstream_api_key)
    return json_response(payload, read.status_code, call.request_id, relay)


def _dialect(call: Call, body: dict[str, Any], screener: StreamScreener) -> Dialect:
    if call.endpoint == "responses":
        return ResponseStream(screener, call.policy)
    return ChoiceStream(call.endpoint, screener, call.policy, choices=choice_count(call.endpoint, body))


class Relay:
    """Relays one upstream event stream to one client, screened; owns the upstream response."""

    def __init__(
        self,
        gw: Gateway,
        call: Call,
        answer: httpx.Response,
        stack: AsyncExitStack,
        screener: StreamScreener,
        dialect: Dialect,
    ) -> None:
        self._gw, self._call, self._answer, self._stack = gw, call, answer, stack
        self._screener, self._dialect = screener, dialect
        self._generator: AsyncGenerator[bytes, None] | None = None
        self._finished = False
        self.client_disconnected = False
        self.upstream_error: str | None = None
        # When the upstream sent its first event and the client got its first frame (the added TTFT).
        self._first_event: float | None = None
        self._first_frame: float | None = None

    def frames(self) -> AsyncIterator[bytes]:
        """The SSE frames for the client (iterate once)."""
        self._generator = self._frames()
        return self._generator

    async def aclose(self) -> None:
        """Close the relay whatever state it is in (a backstop for a response that was cancelled)."""
        if self._generator is not None:
            await self._generator.aclose()
        if not self._finished:
            self.client_disconnected = True
        await self._finish()

    async def _frames(self) -> AsyncGenerator[bytes, None]:
        try:
            async for frame in self._relay():
                if self._first_frame is None:
                    self._first_frame = time.perf_counter()
                yield frame
        except Exception:  # a bug must end the stream with an error event, not a body cut mid-frame
            log.exception("streaming relay failed (request %s)", self._call.request_id)
            self.upstream_error = "proxy_error"
            yield self._dialect.error(
                "The proxy hit an unexpected error; it has been logged.", "internal_error"
            )
        except BaseException:  # cancelled or closed: the client went away
            self.client_disconnected = True
            raise
        finally:
            await self._finish()

    async def _relay(self) -> AsyncIterator[bytes]:
        events = upstream_events.events(
            self._answer,
            idle_s=self._call.policy.upstream.timeout.total,
            max_event_chars=self._gw.settings.max_upstream_event_bytes,
        )
        try:
            async for event in events:
                if self._first_event is None:
                    self._first_event = time.perf_counter()
                step = await self._dialect.feed(event)
                if step.stop:
                    break
                for frame in step.frames:
                    yield frame
            else:
                step = await self._dialect.end()
        except upstream_events.EventTooLarge as exc:  # issue 14: one event may not take the memory
            self.upstream_error = "upstream_too_large"
            step = await self._dialect.fail(f"The upstream stream is refused: {exc}.", "upstream_too_large")
        except sse.StreamBroken as exc:
            self.upstream_error = "invalid_event"
            step = await self._dialect.fail(
                f"The upstream stream is broken: {exc}.", "upstream_invalid_event"
            )
        except httpx.HTTPError as exc:
            self.upstream_error = type(exc).__name__
            mapped = upstream.map_transport_error(exc)
            message = str(exc) if isinstance(exc, upstream_events.StreamStalled) else mapped.message
            step = await self._dialect.fail(message, mapped.code or "upstream_error")
        finally:
            await events.aclose()
        await self._close_upstream()  # before the last frames: a blocked stream is not read any further
        # The record is written (confirmed) before the last frames: a client that saw [DONE] is on record.
        if await self._finish() is AUDIT_UNAVAILABLE:
            yield self._dialect.error(AUDIT_UNAVAILABLE.message, "audit_unavailable")
            return
        for frame in step.frames:
            yield frame

    async def _close_upstream(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
            await self._stack.aclose()

    async def _finish(self) -> Outcome | None:
        if self._finished:
            return None
        self._finished = True
        await self._close_upstream()
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
            screening = self._screener.summary()
            exchange = Exchange(self._answer.status_code)
            return await decide_call(self._gw, self._call, screening, upstream=exchange, stream=self._end())
        return None

    def _end(self) -> StreamEnd:
        """How the stream ended, for its audit record and the streaming metrics."""
        added = None
        if self._first_event is not None and self._first_frame is not None:
            added = max(0.0, self._first_frame - self._first_event)
        return StreamEnd(
            outcome=self._dialect.outcome,
            holdback=self._screener.stats(),
            added_ttft_s=added,
            client_disconnected=self.client_disconnected,
            upstream_error=self.upstream_error,
        )

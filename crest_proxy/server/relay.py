"""``stream: true``: open the upstream stream, relay its events screened, close it, audit what happened.

The upstream response is opened before the client gets a status line, so an upstream HTTP error is still
answered as JSON with its status. After that the relay owns the upstream response: it is closed when a
block ends the stream, when the stream ends, and when the client goes away (Starlette cancels the
response on ``http.disconnect``; a background task closes a relay that never got to run).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from crest_proxy.errors import UpstreamError
from crest_proxy.screening.guard import Screening, audit_record
from crest_proxy.screening.holdback import StreamScreener
from crest_proxy.server.endpoints import (
    ENDPOINTS,
    Call,
    Gateway,
    json_response,
    upstream_payload,
    write_audit,
)
from crest_proxy.streaming import sse
from crest_proxy.streaming.choices import ChoiceStream
from crest_proxy.streaming.dialect import Dialect
from crest_proxy.streaming.responses import ResponseStream
from crest_proxy.types import AuditRecord
from crest_proxy.upstream import pool as upstream

log = logging.getLogger("crest_proxy.streaming")

# Closing the upstream and writing the audit record must finish even while the response task is being
# cancelled (client gone), but never hang a worker.
_CLEANUP_TIMEOUT_S = 5.0


async def stream_completion(gw: Gateway, call: Call, body: dict[str, Any], inbound: Screening) -> Response:
    """Forward a ``stream: true`` request and relay the upstream's events, screened, as SSE."""
    stack = AsyncExitStack()
    try:
        answer = await _open(gw, call, body, stack)
    except UpstreamError as exc:
        await write_audit(gw, call, inbound, None, upstream_error=exc.code)
        raise
    await write_audit(gw, call, inbound, answer.status_code)
    try:
        early = await _early_answer(gw, call, answer)
    except BaseException:
        await stack.aclose()
        raise
    if early is not None:
        await stack.aclose()
        return early
    screener = StreamScreener(gw.guard, call.policy)
    relay = Relay(gw, call, answer, stack, screener, _dialect(call, body, screener))
    headers = {
        **{
            k: v
            for k, v in upstream.forward_response_headers(answer.headers).items()
            if k.lower() != "content-type"
        },
        "cache-control": "no-cache",
        "x-accel-buffering": "no",  # nginx and friends must not buffer what we already held back
    }
    return StreamingResponse(
        relay.frames(),
        media_type="text/event-stream",
        headers=headers,
        background=BackgroundTask(relay.aclose),
    )


async def _open(gw: Gateway, call: Call, body: dict[str, Any], stack: AsyncExitStack) -> httpx.Response:
    client = await gw.upstreams.client_for(call.policy)
    headers = upstream.forward_request_headers(
        call.headers,
        api_key=gw.store.current.upstream_api_key(call.policy.tenant),
        request_id=call.request_id,
    )
    headers["accept"] = "text/event-stream"
    return await stack.enter_async_context(
        upstream.open_stream(client, ENDPOINTS[call.endpoint], body, headers)
    )


async def _early_answer(gw: Gateway, call: Call, answer: httpx.Response) -> Response | None:
    """The JSON answer when the upstream did not start a stream (its error, passed through), else None."""
    if answer.status_code < 400 and sse.is_event_stream(answer):
        return None
    if answer.status_code < 400:
        raise UpstreamError("The upstream answered a streaming request without an event stream.")
    try:
        await answer.aread()
    except httpx.HTTPError as exc:
        raise upstream.map_transport_error(exc) from exc
    relay = upstream.forward_response_headers(answer.headers)
    payload = upstream_payload(answer, secret=gw.store.current.upstream_api_key(call.policy.tenant))
    return json_response(payload, answer.status_code, call.request_id, relay)


def _dialect(call: Call, body: dict[str, Any], screener: StreamScreener) -> Dialect:
    if call.endpoint == "responses":
        return ResponseStream(screener, call.policy)
    return ChoiceStream(call.endpoint, screener, call.policy, choices=choice_count(call.endpoint, body))


def choice_count(endpoint: str, body: dict[str, Any]) -> int:
    """How many choices a request asks for: ``n``, times the number of prompts for legacy completions."""
    n = body.get("n")
    n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    prompt = body.get("prompt")
    if endpoint != "completions" or not isinstance(prompt, list) or not prompt:
        return n
    # A list of strings or of token arrays is several prompts; a flat list of token ids is one.
    return n * len(prompt) if all(isinstance(p, (str, list)) for p in prompt) else n


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
        events = sse.events(self._answer, idle_s=self._call.policy.upstream.timeout.total)
        try:
            async for event in events:
                step = await self._dialect.feed(event)
                if step.stop:
                    break
                for frame in step.frames:
                    yield frame
            else:
                step = await self._dialect.end()
        except sse.StreamBroken as exc:
            self.upstream_error = "invalid_event"
            step = await self._dialect.fail(
                f"The upstream stream is broken: {exc}.", "upstream_invalid_event"
            )
        except httpx.HTTPError as exc:
            self.upstream_error = type(exc).__name__
            mapped = upstream.map_transport_error(exc)
            message = str(exc) if isinstance(exc, sse.StreamStalled) else mapped.message
            step = await self._dialect.fail(message, mapped.code or "upstream_error")
        finally:
            await events.aclose()
        await self._close_upstream()  # before the last frames: a blocked stream is not read any further
        for frame in step.frames:
            yield frame

    async def _close_upstream(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
            await self._stack.aclose()

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        await self._close_upstream()
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
            await self._gw.audit.write(self._record())

    def _record(self) -> AuditRecord:
        stats = self._screener.stats()
        extra: dict[str, object] = {
            "stream": True,
            "outcome": self._dialect.outcome,
            "stream_windows": stats.windows,
            "max_holdback_chars": stats.max_holdback_chars,
            "max_holdback_ms": stats.max_holdback_ms,
        }
        if self.client_disconnected:
            extra["client_disconnected"] = True
        if self.upstream_error:
            extra["upstream_error"] = self.upstream_error
        summary = self._screener.summary()
        return audit_record(
            summary, self._call.context(), upstream_status=self._answer.status_code, extra=extra
        )

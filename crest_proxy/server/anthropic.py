"""Anthropic's Messages API: ``POST /v1/messages`` and ``/v1/messages/count_tokens``, screened like OpenAI's.

The Anthropic SDK works against the proxy with ``base_url="http://HOST:PORT"``. Tenants authenticate with
``x-api-key`` or ``Authorization: Bearer``; ``anthropic-version`` and ``anthropic-beta`` are passed on.
Every error is answered in Anthropic's shape (``{"type": "error", "error": {"type", "message"}}``). The
upstream is the tenant's: ``provider: anthropic`` (key sent as ``x-api-key``), an OpenAI-compatible server
that also serves ``/v1/messages``, or litellm (any provider, translated by litellm).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from crest_proxy.errors import (
    AuthenticationError,
    ContentPolicyError,
    ProxyError,
    UpstreamError,
)
from crest_proxy.policy.model import AnthropicUpstream, Policy
from crest_proxy.screening.decision import Answer, Exchange, Outcome, audit_refusal
from crest_proxy.screening.guard import Screening
from crest_proxy.screening.holdback import StreamScreener
from crest_proxy.server.access import client_request_id_of, refusal_record
from crest_proxy.server.endpoints import (
    raise_for,
    read_json,
    refuse_unread_inputs,
    resolve_model,
    screen_body,
)
from crest_proxy.server.gateway import (
    Call,
    Gateway,
    ReadAnswer,
    decide_call,
    forward,
    gateway_of,
    json_response,
    upstream_payload,
)
from crest_proxy.server.relay import Relay, early_answer_or_keep, event_stream_response
from crest_proxy.streaming import sse
from crest_proxy.streaming.anthropic import MessageStream
from crest_proxy.types import Action, Direction
from crest_proxy.upstream import pool as upstream
from crest_proxy.wire import anthropic as wire
from crest_proxy.wire.slots import path_param

MESSAGES, COUNT_TOKENS = "messages", "messages.count_tokens"
_PATHS = {MESSAGES: wire.MESSAGES.path, COUNT_TOKENS: wire.COUNT_TOKENS.path}
DEFAULT_VERSION = "2023-06-01"  # sent when the client names none: Anthropic's API requires the header


async def messages(request: Request) -> Response:
    """``POST /v1/messages``."""
    return await _answer(request, MESSAGES)


async def count_tokens(request: Request) -> Response:
    """``POST /v1/messages/count_tokens``: screened like the request it counts, then forwarded."""
    return await _answer(request, COUNT_TOKENS)


def routes() -> list[Route]:
    """The Messages API's routes."""
    return [
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]


async def _answer(request: Request, endpoint: str) -> Response:
    """Serve one request; every ``ProxyError`` becomes Anthropic's error body with the same status."""
    try:
        return await _serve(request, endpoint)
    except ProxyError as exc:
        return error_response(exc.status_code, exc.message, request.state.request_id)


def error_response(status: int, message: str, request_id: str) -> Response:
    """Anthropic's JSON error (its SDK reads ``request-id``; our clients read ``x-request-id``)."""
    body = wire.error_body(status, message, request_id=request_id)
    return json_response(body, status, request_id, {"request-id": request_id})


async def _serve(request: Request, endpoint: str) -> Response:
    gw = gateway_of(request)
    call = await _parse(request, endpoint, gw)
    body = resolve_model(call.policy, call.body)
    inbound, body = await screen_body(gw, call, Direction.INBOUND, body, wire.request_texts(body))
    if inbound.action is Action.BLOCK:
        return _refusal(call, await decide_call(gw, call, inbound))
    await refuse_unread_inputs(gw, call, inbound)
    if body.get("stream") is True and endpoint == MESSAGES:
        return await _stream(gw, call, body, inbound)
    return await _forward(gw, call, body, inbound)


async def _parse(request: Request, endpoint: str, gw: Gateway) -> Call:
    policies = gw.store.current  # one snapshot: a reload mid-request cannot swap the tenant's secrets
    policy = authenticate(request, policies.tenant_for_key)
    if (unaudited := audit_refusal(policy, gw.audit)) is not None:  # audit.on_failure: fail_closed
        raise_for(unaudited)
    try:
        body = await read_json(request, gw.settings.max_body_bytes, gw.settings.body_timeout_s)
        wire.validate_request(body, count_tokens=endpoint == COUNT_TOKENS)
    except ProxyError as exc:  # refused before screening: still on the record, as OpenAI requests are
        client_id = client_request_id_of(request.headers)
        record = refusal_record(
            exc, request_id=request.state.request_id, tenant=policy.tenant, endpoint=endpoint,
            client_request_id=client_id,
        )  # fmt: skip
        await gw.audit.write(record)
        raise
    media = tuple(path_param(path) for path in wire.media_inputs(body))
    return Call(
        endpoint, policy, body, request.state.request_id, request.headers, policies, media_inputs=media
    )


def authenticate(request: Request, tenant_for_key: Any) -> Policy:
    """The tenant for ``x-api-key`` (the Anthropic SDK's header) or ``Authorization: Bearer``; else 401."""
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        key = bearer.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise AuthenticationError(
            "Send your crest-proxy key as 'x-api-key' or 'Authorization: Bearer <key>'."
        )
    policy: Policy | None = tenant_for_key(key)
    if policy is None:
        raise AuthenticationError("invalid x-api-key")
    request.state.tenant = policy.tenant  # for the access log and request metrics
    return policy


def _refusal(call: Call, outcome: Outcome) -> Response:
    """A blocked request: an error (raised), or a refusal message (``block.style: refusal``)."""
    raise_for(outcome)
    if call.endpoint != MESSAGES:  # a token count has no message to refuse with
        raise ContentPolicyError(outcome.message)
    message = wire.refusal_message(call.body, outcome.message, request_id=call.request_id)
    if call.body.get("stream") is True:
        return StreamingResponse(_replay(message), media_type="text/event-stream")
    return json_response(message, 200, call.request_id)


async def _replay(message: dict[str, Any]) -> AsyncIterator[bytes]:
    """A whole Message as the event stream the API would have sent for it."""
    start = {**message, "content": [], "stop_reason": None}
    yield sse.json_frame({"type": "message_start", "message": start}, "message_start")
    for index, block in enumerate(message["content"]):
        yield sse.json_frame(
            {"type": "content_block_start", "index": index, "content_block": {**block, "text": ""}},
            "content_block_start",
        )
        delta = {"type": "text_delta", "text": block["text"]}
        yield sse.json_frame(
            {"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"
        )
        yield sse.json_frame({"type": "content_block_stop", "index": index}, "content_block_stop")
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield sse.json_frame(
        {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 0}}, "message_delta"
    )
    yield sse.json_frame({"type": "message_stop"}, "message_stop")


def upstream_headers(call: Call) -> dict[str, str]:
    """Client headers for the upstream, with the tenant's key where its provider expects it."""
    key = call.upstream_api_key
    headers = upstream.forward_request_headers(call.headers, api_key=key, request_id=call.request_id)
    headers.setdefault("anthropic-version", DEFAULT_VERSION)
    if isinstance(call.policy.upstream, AnthropicUpstream):
        headers.pop("authorization", None)
        if key:
            headers["x-api-key"] = key
    return headers


async def _forward(gw: Gateway, call: Call, body: dict[str, Any], inbound: Screening) -> Response:
    """Send the (possibly redacted) request upstream and screen the answer before it reaches the client."""
    client = await gw.upstreams.client_for(call.policy)
    path, total_s = _PATHS[call.endpoint], call.policy.upstream.timeout.total
    limit = gw.settings.max_upstream_body_bytes
    headers = upstream_headers(call)
    answer, outcome = await forward(
        gw, call, inbound,
        lambda: upstream.post_json(client, path, body, headers, total_s=total_s, max_bytes=limit),
    )  # fmt: skip
    raise_for(outcome)
    return await _screened_answer(gw, call, answer)


async def _screened_answer(gw: Gateway, call: Call, answer: ReadAnswer) -> Response:
    relay = {**upstream.forward_response_headers(answer.headers), "request-id": call.request_id}
    payload = upstream_payload(answer, secret=call.upstream_api_key)
    if answer.status_code >= 400:
        return json_response(
            _anthropic_error(answer.status_code, payload), answer.status_code, call.request_id, relay
        )
    if call.endpoint == COUNT_TOKENS:
        return json_response(payload, answer.status_code, call.request_id, relay)  # numbers only: no text
    outbound, payload = await screen_body(gw, call, Direction.OUTBOUND, payload, wire.response_texts(payload))
    outcome = await decide_call(gw, call, outbound, upstream=Exchange(answer.status_code))
    raise_for(outcome)
    if outcome.answer is Answer.REFUSE:
        payload = wire.block_message(payload, outcome.message)
    return json_response(payload, answer.status_code, call.request_id, relay)


def _anthropic_error(status: int, payload: Any) -> Any:
    """An upstream error in Anthropic's shape (an OpenAI-compatible upstream answers in OpenAI's)."""
    if isinstance(payload, Mapping) and payload.get("type") == "error":
        return payload
    error = payload.get("error") if isinstance(payload, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    return wire.error_body(
        status, message if isinstance(message, str) else f"The upstream answered HTTP {status}."
    )


async def _stream(gw: Gateway, call: Call, body: dict[str, Any], inbound: Screening) -> Response:
    """Open the upstream event stream and relay it screened (``Relay`` owns it from here on)."""
    stack = AsyncExitStack()
    answer, outcome = await forward(gw, call, inbound, lambda: _open(gw, call, body, stack))

    async def check() -> Response | None:
        raise_for(outcome)
        return await _early_answer(gw, call, answer)

    early = await early_answer_or_keep(stack, check)
    if early is not None:
        return early
    screener = StreamScreener(gw.guard, call.policy)
    relay = Relay(gw, call, answer, stack, screener, MessageStream(screener, call.policy))
    return event_stream_response(relay, answer, {"request-id": call.request_id})


async def _open(gw: Gateway, call: Call, body: dict[str, Any], stack: AsyncExitStack) -> httpx.Response:
    client = await gw.upstreams.client_for(call.policy)
    headers = {**upstream_headers(call), "accept": "text/event-stream"}
    return await stack.enter_async_context(upstream.open_stream(client, _PATHS[call.endpoint], body, headers))


async def _early_answer(gw: Gateway, call: Call, answer: httpx.Response) -> Response | None:
    """The JSON answer when the upstream did not start an event stream (its error, in Anthropic's shape)."""
    if answer.status_code < 400 and sse.is_event_stream(answer):
        return None
    if answer.status_code < 400:
        raise UpstreamError("The upstream answered a streaming request without an event stream.")
    try:
        read = await upstream.read_answer(answer)  # size-capped, key pieces masked, as relay.py does
    except httpx.HTTPError as exc:
        raise upstream.map_transport_error(exc) from exc
    return await _screened_answer(gw, call, read)

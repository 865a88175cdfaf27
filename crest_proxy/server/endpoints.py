"""Starlette endpoints of the OpenAI-compatible API: authenticate, screen, forward, screen, audit, respond."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crest_proxy import wire
from crest_proxy.audit.sink import AuditSink
from crest_proxy.errors import (
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    NotFoundError,
    PayloadTooLargeError,
    ProxyError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
)
from crest_proxy.policy.files import PolicySet
from crest_proxy.policy.model import Policy
from crest_proxy.screening.guard import Guard, RequestContext, Screening, audit_record
from crest_proxy.server.metrics import Metrics
from crest_proxy.settings import ServerSettings
from crest_proxy.types import Action, Direction
from crest_proxy.upstream import pool as upstream

# Endpoint name (as wire.py knows it) -> path under /v1 (also the upstream path relative to base_url).
ENDPOINTS: dict[str, str] = {
    "chat.completions": "chat/completions",
    "completions": "completions",
    "responses": "responses",
    "embeddings": "embeddings",
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class PolicyStore:
    """Holds the current ``PolicySet``; swapping it is one reference assignment (atomic for readers)."""

    def __init__(self, policies: PolicySet) -> None:
        self.current = policies


@dataclass
class Gateway:
    """Everything a request needs, built once by ``create_app`` and shared by the endpoints."""

    settings: ServerSettings
    store: PolicyStore
    guard: Guard
    audit: AuditSink
    upstreams: upstream.UpstreamPool
    metrics: Metrics = field(default_factory=Metrics)


@dataclass(frozen=True)
class Call:
    """One authenticated, parsed and validated client request."""

    endpoint: str
    policy: Policy
    body: dict[str, Any]
    request_id: str
    headers: Mapping[str, str]
    # The policy set this call authenticated against: a reload mid-request must not change its secrets.
    policies: PolicySet | None = None

    @property
    def upstream_api_key(self) -> str | None:
        """The tenant's upstream key as of authentication (None when it sends none)."""
        return None if self.policies is None else self.policies.upstream_api_key(self.policy.tenant)

    @property
    def model(self) -> str | None:
        """The model the client asked for."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    def context(self) -> RequestContext:
        """The audit context of this call."""
        return RequestContext(
            request_id=self.request_id,
            tenant=self.policy.tenant,
            endpoint=self.endpoint,
            model=self.model,
            audit_mode=self.policy.audit.content,
        )


def request_id_of(request: Request) -> str:
    """The client's ``x-request-id`` when it is a safe token, else a fresh one (ids end up in logs)."""
    incoming = request.headers.get("x-request-id", "")
    return incoming if _REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"


def gateway_of(request: Request) -> Gateway:
    """The app's gateway (set by the lifespan)."""
    return request.app.state.gateway  # type: ignore[no-any-return]


def authenticate(request: Request, store: PolicyStore) -> Policy:
    """The tenant policy for the presented proxy key, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError(
            "You didn't provide an API key. Send your crest-proxy key as 'Authorization: Bearer <key>'."
        )
    policy = store.current.tenant_for_key(key.strip())
    if policy is None:
        raise AuthenticationError("Incorrect API key provided.")
    request.state.tenant = policy.tenant  # for the access log and request metrics
    return policy


async def read_json(request: Request, limit: int) -> Any:
    """The request body parsed as JSON, with the size limit enforced while reading."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"Request body is larger than the limit of {limit} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"Request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequestError("Request body is not valid UTF-8.", code="invalid_json") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BadRequestError(
            f"We could not parse the JSON body of your request ({exc}).", code="invalid_json"
        ) from exc


def resolve_model(policy: Policy, body: dict[str, Any]) -> dict[str, Any]:
    """Enforce the tenant's model allow-list and map aliases to upstream model names."""
    model = body.get("model")
    allowed = policy.upstream.models
    if allowed is not None and model not in allowed and model not in policy.upstream.aliases:
        raise NotFoundError(
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    target = policy.upstream.aliases.get(model, model) if isinstance(model, str) else model
    return body if target == model else {**body, "model": target}


async def parse_call(request: Request, endpoint: str, gw: Gateway) -> Call:
    """Authenticate, read, parse and validate one request."""
    request_id = request.state.request_id
    policies = gw.store.current  # the same set ``authenticate`` reads (no await between): one snapshot
    policy = authenticate(request, gw.store)
    body = await read_json(request, gw.settings.max_body_bytes)
    wire.validate_request(endpoint, body)
    return Call(endpoint, policy, body, request_id, request.headers, policies)


def screened_slots(policy: Policy, direction: Direction, slots: list[wire.TextSlot]) -> list[wire.TextSlot]:
    """The slots the policy asks to screen (roles and tool-call arguments are configurable)."""
    side = policy.side(direction)
    roles = set(side.roles)
    return [
        s
        for s in slots
        if (s.role is None or s.role in roles) and (side.tool_calls or s.kind != "tool_arguments")
    ]


async def screen_body(
    gw: Gateway, call: Call, direction: Direction, body: dict[str, Any], slots: list[wire.TextSlot]
) -> tuple[Screening, dict[str, Any]]:
    """Screen ``slots`` of ``body``; returns the screening and the body with redactions applied."""
    chosen = screened_slots(call.policy, direction, slots)
    screening = await gw.guard.screen(call.policy, direction, [s.text for s in chosen])
    if screening.action is not Action.REDACT:
        return screening, body
    replacements = {
        s.path: new
        for s, new, old in zip(chosen, screening.redacted_texts(), screening.texts, strict=True)
        if new != old
    }
    return screening, wire.replace_texts(body, replacements)


async def write_audit(
    gw: Gateway, call: Call, screening: Screening, upstream_status: int | None, **extra: object
) -> None:
    """Write the audit record of one screening decision (and count it in the metrics)."""
    gw.metrics.observe_screening(call.policy.tenant, screening)
    await gw.audit.write(
        audit_record(screening, call.context(), upstream_status=upstream_status, extra=extra)
    )


def json_response(
    body: Any, status: int, request_id: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response carrying the request id."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(
        content,
        status_code=status,
        media_type="application/json",
        headers={**(headers or {}), "x-request-id": request_id},
    )


def inbound_refusal(call: Call, screening: Screening) -> Response | None:
    """The response for a blocked inbound screening, or None when the request may go on."""
    if screening.action is not Action.BLOCK:
        return None
    if screening.failed_closed:
        error = RateLimitError if screening.overloaded else ServiceUnavailableError
        raise error(
            "The content classifier is unavailable and this tenant's policy fails closed; retry later.",
            code="classifier_overloaded" if screening.overloaded else "classifier_unavailable",
        )
    block = call.policy.block
    if block.style == "refusal" and call.endpoint != "embeddings":
        body = wire.refusal_response(call.endpoint, call.body, block.message, request_id=call.request_id)
        return json_response(body, 200, call.request_id)
    raise ContentPolicyError(block.message)


async def handle_completion(request: Request, endpoint: str) -> Response:
    """Screen, forward and screen one non-streaming or streaming completion-style request."""
    gw = gateway_of(request)
    call = await parse_call(request, endpoint, gw)
    body = resolve_model(call.policy, call.body)
    inbound, body = await screen_body(gw, call, Direction.INBOUND, body, wire.request_texts(endpoint, body))
    try:
        refusal = inbound_refusal(call, inbound)
    except ProxyError:
        await write_audit(gw, call, inbound, None)
        raise
    if refusal is not None:
        await write_audit(gw, call, inbound, None)
        return refusal
    if body.get("stream") is True:
        from crest_proxy.server.relay import stream_completion

        return await stream_completion(gw, call, body, inbound)
    return await forward_and_screen(gw, call, body, inbound)


async def forward_and_screen(gw: Gateway, call: Call, body: dict[str, Any], inbound: Screening) -> Response:
    """Send the (possibly redacted) request upstream and screen the answer before it reaches the client."""
    client = await gw.upstreams.client_for(call.policy)
    headers = upstream.forward_request_headers(
        call.headers,
        api_key=call.upstream_api_key,
        request_id=call.request_id,
    )
    tenant, started = call.policy.tenant, time.perf_counter()
    try:
        answer = await upstream.post_json(
            client, ENDPOINTS[call.endpoint], body, headers, total_s=call.policy.upstream.timeout.total
        )
    except UpstreamError as exc:
        gw.metrics.observe_upstream(tenant, call.endpoint, None, time.perf_counter() - started)
        await write_audit(gw, call, inbound, None, upstream_error=exc.code)
        raise
    gw.metrics.observe_upstream(tenant, call.endpoint, answer.status_code, time.perf_counter() - started)
    await write_audit(gw, call, inbound, answer.status_code)
    relay = upstream.forward_response_headers(answer.headers)
    payload = upstream_payload(answer, secret=call.upstream_api_key)
    if answer.status_code >= 400:
        return json_response(payload, answer.status_code, call.request_id, relay)
    outbound, payload = await screen_body(
        gw, call, Direction.OUTBOUND, payload, wire.response_texts(call.endpoint, payload)
    )
    await write_audit(gw, call, outbound, answer.status_code)
    if outbound.action is Action.BLOCK:
        message = call.policy.block.message
        if call.endpoint == "embeddings":
            raise ContentPolicyError(message)
        payload = wire.block_response(call.endpoint, payload, message)
    return json_response(payload, answer.status_code, call.request_id, relay)


def upstream_payload(answer: httpx.Response, *, secret: str | None) -> Any:
    """The upstream's JSON body; a non-JSON body becomes a 502 (its status is kept in the message).

    Error bodies are relayed with their status, minus anything that could reveal the tenant's upstream key.
    """
    if answer.status_code in (401, 403):
        # The upstream rejected *our* credentials; relaying 401 would tell the client its proxy key is wrong,
        # and OpenAI's message quotes part of the key. It is the gateway's fault: 502.
        raise UpstreamError(
            f"The upstream rejected this tenant's upstream credentials (HTTP {answer.status_code}); "
            "ask the gateway operator to check the policy's upstream.api_key.",
            code="upstream_authentication_failed",
        )
    try:
        payload = answer.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UpstreamError(
            f"The upstream answered HTTP {answer.status_code} with a body that is not JSON."
        ) from exc
    if answer.status_code < 400 and not isinstance(payload, dict):
        raise UpstreamError("The upstream answered with JSON that is not an object.")
    if answer.status_code >= 400 and secret and secret in answer.text:
        payload = json.loads(answer.text.replace(secret, "***"))
    return payload


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: the tenant's upstream models (filtered by its allow-list, aliases added)."""
    gw = gateway_of(request)
    policies = gw.store.current  # one snapshot: a reload mid-request cannot swap the key under us
    policy = authenticate(request, gw.store)
    api_key = policies.upstream_api_key(policy.tenant)
    request_id = request.state.request_id
    client = await gw.upstreams.client_for(policy)
    headers = upstream.forward_request_headers(request.headers, api_key=api_key, request_id=request_id)
    answer = await upstream.get(client, "models", headers, total_s=policy.upstream.timeout.total)
    payload = upstream_payload(answer, secret=api_key)
    if answer.status_code < 400:
        payload = visible_models(policy, payload)
    return json_response(payload, answer.status_code, request_id)


def visible_models(policy: Policy, payload: dict[str, Any]) -> dict[str, Any]:
    """Apply the tenant's allow-list and aliases to an upstream model list."""
    data = [m for m in payload.get("data", []) if isinstance(m, dict)]
    allowed = policy.upstream.models
    if allowed is not None:
        data = [m for m in data if m.get("id") in allowed]
    known = {m.get("id"): m for m in payload.get("data", []) if isinstance(m, dict)}
    for alias, target in policy.upstream.aliases.items():
        if target in known and all(m.get("id") != alias for m in data):
            data.append({**known[target], "id": alias})
    return {**payload, "object": "list", "data": data}


def _endpoint(name: str):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        return await handle_completion(request, name)

    endpoint.__name__ = name.replace(".", "_")
    return endpoint


def routes() -> list[Route]:
    """The API's routes."""
    api = [Route(f"/v1/{path}", _endpoint(name), methods=["POST"]) for name, path in ENDPOINTS.items()]
    return [*api, Route("/v1/models", list_models, methods=["GET"])]

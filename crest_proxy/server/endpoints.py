"""Starlette endpoints of the OpenAI-compatible API: authenticate, screen, forward, screen, audit, respond."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crest_proxy import wire
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
from crest_proxy.policy.model import Policy
from crest_proxy.screening import unread
from crest_proxy.screening.decision import Answer, Exchange, Outcome, audit_refusal
from crest_proxy.screening.guard import Screening
from crest_proxy.screening.slots import replacements, screened_slots
from crest_proxy.server.access import client_request_id_of, refusal_record
from crest_proxy.server.gateway import (
    ENDPOINTS,
    Call,
    Gateway,
    PolicyStore,
    decide_call,
    forward,
    gateway_of,
    json_response,
    upstream_payload,
)
from crest_proxy.server.limits import read_body
from crest_proxy.server.relay import stream_completion
from crest_proxy.settings import ServerSettings
from crest_proxy.types import Action, Direction
from crest_proxy.upstream import pool as upstream
from crest_proxy.wire import strict_json
from crest_proxy.wire.answer_shape import shape_problem

BODY_TIMEOUT_S = ServerSettings.body_timeout_s  # for callers that pass no deadline of their own


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


async def read_json(request: Request, limit: int, timeout_s: float = BODY_TIMEOUT_S) -> Any:
    """The request body parsed as strict JSON, within the size limit (413) and the time limit (408)."""
    raw = await read_body(request, limit=limit, timeout_s=timeout_s)
    try:
        return strict_json.loads(raw)
    except strict_json.JsonRejected as exc:
        raise BadRequestError(
            f"We could not parse the JSON body of your request: {exc}.", code="invalid_json"
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
    if (unaudited := audit_refusal(policy, gw.audit)) is not None:  # audit.on_failure: fail_closed
        raise_for(unaudited)
    try:
        body = await read_json(request, gw.settings.max_body_bytes, gw.settings.body_timeout_s)
        reading = wire.validate_request(endpoint, body)
    except ProxyError as exc:  # refused before screening: still on the record (issue 14)
        client_id = client_request_id_of(request.headers)
        record = refusal_record(
            exc, request_id=request_id, tenant=policy.tenant, endpoint=endpoint, client_request_id=client_id
        )
        await gw.audit.write(record)
        raise
    tokens = tuple(wire.path_param(path) for path in reading.tokens)
    media = tuple(wire.path_param(path) for path in reading.media)
    return Call(
        endpoint, policy, body, request_id, request.headers, policies,
        token_inputs=tokens, media_inputs=media, texts=reading.texts,
    )  # fmt: skip


async def screen_body(
    gw: Gateway, call: Call, direction: Direction, body: dict[str, Any], slots: list[wire.TextSlot]
) -> tuple[Screening, dict[str, Any]]:
    """Screen ``slots`` of ``body``; returns the screening and the body with redactions applied."""
    chosen = screened_slots(call.policy, direction, slots)
    texts, groups = [s.text for s in chosen], [s.group for s in chosen]
    screening = await gw.guard.screen(call.policy, direction, texts, groups=groups)
    if screening.action is not Action.REDACT:
        return screening, body
    return screening, wire.replace_texts(body, replacements(chosen, screening))


def raise_for(outcome: Outcome) -> None:
    """Raise the OpenAI error an outcome stands for (a rejection, or the classifier failing closed)."""
    if outcome.answer is Answer.UNAVAILABLE:
        error = RateLimitError if outcome.status == 429 else ServiceUnavailableError
        raise error(outcome.message, code=outcome.code)
    if outcome.answer is Answer.REJECT and outcome.status == 413:  # over the screening budget
        raise PayloadTooLargeError(outcome.message, code=outcome.code)
    if outcome.answer is Answer.REJECT and outcome.status == 502:  # an answer too big to screen
        raise UpstreamError(outcome.message, code=outcome.code)
    if outcome.answer is Answer.REJECT:
        raise ContentPolicyError(outcome.message)


async def refuse_unread_inputs(gw: Gateway, call: Call, inbound: Screening) -> None:
    """Refuse what the model would read but the classifier cannot, where the tenant's policy says so
    (``inbound.token_inputs`` / ``inbound.media_inputs``: block); recorded as a block."""
    message = unread.refusal(call.policy.inbound, call.token_inputs, call.media_inputs)
    if message is not None:
        await decide_call(gw, call, dataclasses.replace(inbound, action=Action.BLOCK))
        raise ContentPolicyError(message)


def inbound_refusal(call: Call, outcome: Outcome) -> Response:
    """The answer to a blocked request: an error (raised), or a refusal completion in the endpoint's shape."""
    raise_for(outcome)
    body = wire.refusal_response(call.endpoint, call.body, outcome.message, request_id=call.request_id)
    return json_response(body, 200, call.request_id)


async def handle_completion(request: Request, endpoint: str) -> Response:
    """Screen, forward and screen one non-streaming or streaming completion-style request."""
    gw = gateway_of(request)
    call = await parse_call(request, endpoint, gw)
    body = resolve_model(call.policy, call.body)
    # The texts validation found: ``resolve_model`` changes only ``model``, which holds none.
    inbound, body = await screen_body(gw, call, Direction.INBOUND, body, list(call.texts))
    if inbound.action is Action.BLOCK:
        return inbound_refusal(call, await decide_call(gw, call, inbound))
    await refuse_unread_inputs(gw, call, inbound)
    if body.get("stream") is True:
        return await stream_completion(gw, call, body, inbound)
    return await forward_and_screen(gw, call, body, inbound)


async def forward_and_screen(gw: Gateway, call: Call, body: dict[str, Any], inbound: Screening) -> Response:
    """Send the (possibly redacted) request upstream and screen the answer before it reaches the client."""
    client = await gw.upstreams.client_for(call.policy)
    path, total_s = ENDPOINTS[call.endpoint], call.policy.upstream.timeout.total
    limit = gw.settings.max_upstream_body_bytes
    headers = call.upstream_headers()
    answer, _ = await forward(
        gw, call, inbound,
        lambda: upstream.post_json(client, path, body, headers, total_s=total_s, max_bytes=limit),
    )  # fmt: skip
    relay = upstream.forward_response_headers(answer.headers)
    payload = upstream_payload(answer, secret=call.upstream_api_key)
    if answer.status_code >= 400:
        return json_response(payload, answer.status_code, call.request_id, relay)
    reading = wire.read_body(call.endpoint, payload, Direction.OUTBOUND)
    if (problem := shape_problem(call.endpoint, payload, reading)) is not None:
        raise UpstreamError(f"The upstream's answer is not shaped as {call.endpoint} answers are: {problem}.")
    outbound, payload = await screen_body(gw, call, Direction.OUTBOUND, payload, reading.texts)
    outcome = await decide_call(gw, call, outbound, upstream=Exchange(answer.status_code))
    raise_for(outcome)
    if outcome.answer is Answer.REFUSE:
        payload = wire.block_response(call.endpoint, payload, outcome.message)
    return json_response(payload, answer.status_code, call.request_id, relay)


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: the tenant's upstream models (filtered by its allow-list, aliases added)."""
    gw = gateway_of(request)
    policies = gw.store.current  # one snapshot: a reload mid-request cannot swap the key under us
    policy = authenticate(request, gw.store)
    api_key = policies.upstream_api_key(policy.tenant)
    request_id = request.state.request_id
    client = await gw.upstreams.client_for(policy)
    headers = upstream.forward_request_headers(request.headers, api_key=api_key, request_id=request_id)
    limit, total_s = gw.settings.max_upstream_body_bytes, policy.upstream.timeout.total
    answer = await upstream.get(client, "models", headers, total_s=total_s, max_bytes=limit)
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

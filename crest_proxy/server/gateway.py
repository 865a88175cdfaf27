"""What every request handler shares: the ``Gateway`` (built once by ``create_app``) and one parsed ``Call``.

Both the non-streamed endpoints (``endpoints.py``) and the stream relay (``relay.py``) import from here,
so neither imports the other's module back (issue 12 found a cycle hidden behind a function-level import).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
from starlette.requests import Request
from starlette.responses import Response

from crest_proxy import endpoints
from crest_proxy.audit.sink import AuditSink
from crest_proxy.errors import UpstreamError
from crest_proxy.policy.files import PolicySet
from crest_proxy.policy.model import Policy
from crest_proxy.screening import unread
from crest_proxy.screening.decision import Exchange, Outcome, Recorders, StreamEnd, decide
from crest_proxy.screening.guard import Guard, RequestContext, Screening
from crest_proxy.server.access import client_request_id_of
from crest_proxy.server.metrics import Metrics
from crest_proxy.settings import ServerSettings
from crest_proxy.upstream import pool as upstream
from crest_proxy.upstream.masking import mask_key_fragments
from crest_proxy.wire import TextSlot, strict_json

# Endpoint name -> path under /v1 (also the upstream path relative to base_url), from the registry.
ENDPOINTS: dict[str, str] = {e.name: e.path for e in endpoints.ENDPOINTS}


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

    @property
    def recorders(self) -> Recorders:
        """Where this gateway's decisions go: its audit sink, counted in its metrics."""
        return Recorders(self.audit, self.metrics)


class ReadAnswer(Protocol):
    """An upstream answer read whole: an ``UpstreamAnswer``, or an ``httpx.Response`` after ``aread``."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> httpx.Headers: ...

    @property
    def content(self) -> bytes: ...


class _HasStatus(Protocol):
    @property
    def status_code(self) -> int: ...


_Answer = TypeVar("_Answer", bound=_HasStatus)  # a read answer, or an opened stream


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
    # Where the request carries token ids the classifier cannot read (``inbound.token_inputs``).
    token_inputs: tuple[str, ...] = ()
    # Where it carries images, audio or files the classifier cannot read (``inbound.media_inputs``).
    media_inputs: tuple[str, ...] = ()
    # The texts of ``body`` the model will read, as validation found them (``wire.read_body``).
    texts: Sequence[TextSlot] = ()

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
            extra=unread.notes(self.token_inputs, self.media_inputs),
            client_request_id=client_request_id_of(self.headers),
        )

    def upstream_headers(self) -> dict[str, str]:
        """The headers to send upstream: the client's, filtered, with the snapshot's upstream key."""
        return upstream.forward_request_headers(
            self.headers, api_key=self.upstream_api_key, request_id=self.request_id
        )


def gateway_of(request: Request) -> Gateway:
    """The app's gateway (set by the lifespan)."""
    return request.app.state.gateway  # type: ignore[no-any-return]


async def decide_call(
    gw: Gateway,
    call: Call,
    screening: Screening,
    *,
    upstream: Exchange | None = None,
    stream: StreamEnd | None = None,
) -> Outcome:
    """``screening.decision.decide`` for one call of this gateway."""
    return await decide(
        screening, call.context(), call.policy, gw.recorders, upstream=upstream, stream=stream
    )


async def forward(
    gw: Gateway, call: Call, inbound: Screening, send: Callable[[], Awaitable[_Answer]]
) -> tuple[_Answer, Outcome]:
    """Call the upstream (``send``), timed, and decide ``inbound`` with that exchange (counted once, here).

    An upstream failure is decided (audited with its code) and re-raised.
    """
    started = time.perf_counter()
    try:
        answer = await send()
    except UpstreamError as exc:
        failed = Exchange(None, time.perf_counter() - started, exc.code)
        await decide_call(gw, call, inbound, upstream=failed)
        raise
    exchange = Exchange(answer.status_code, time.perf_counter() - started)
    return answer, await decide_call(gw, call, inbound, upstream=exchange)


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


def upstream_payload(answer: ReadAnswer, *, secret: str | None) -> Any:
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
    content = answer.content
    if answer.status_code >= 400 and secret:  # any 8+-character piece of the key is masked (issue 14)
        content = mask_key_fragments(content.decode("utf-8", "replace"), secret).encode("utf-8")
    try:
        payload = strict_json.loads(content)  # NaN, 1e400, a lone surrogate … are not JSON either: 502
    except strict_json.JsonRejected as exc:
        raise UpstreamError(
            f"The upstream answered HTTP {answer.status_code} with a body that is not JSON ({exc})."
        ) from exc
    if answer.status_code < 400 and not isinstance(payload, dict):
        raise UpstreamError("The upstream answered with JSON that is not an object.")
    return payload

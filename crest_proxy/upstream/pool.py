"""The upstream edge: pooled httpx clients per tenant upstream, header hygiene, transport error mapping.

The transport is injectable (``httpx.MockTransport`` / ``httpx.ASGITransport`` in tests) — the same seam
httpx itself uses for testing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from crest_proxy.errors import UpstreamError, UpstreamTimeoutError
from crest_proxy.policy.model import LiteLLMUpstream, Policy
from crest_proxy.settings import ServerSettings
from crest_proxy.upstream.masking import UpstreamAnswer, masked

MAX_ANSWER_BYTES = ServerSettings.max_upstream_body_bytes
_log = logging.getLogger("crest_proxy.upstream")
LITELLM_BASE_URL = "http://litellm.invalid/v1/"  # never resolved (RFC 6761): the transport answers
UPSTREAM_LIMITS = httpx.Limits(max_connections=200, keepalive_expiry=5.0)  # per upstream

# RFC 9110 §7.6.1 hop-by-hop headers, plus what the proxy must own itself (auth, host, length, cookies).
_DROP_REQUEST = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "authorization", "content-length", "cookie",
        "accept-encoding", "x-api-key", "api-key", "openai-organization", "openai-project",
    }
)  # fmt: skip
_DROP_RESPONSE = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length", "content-encoding", "set-cookie", "x-request-id",
        "date", "server",
    }
)  # fmt: skip


def forward_request_headers(
    headers: Mapping[str, str], *, api_key: str | None, request_id: str
) -> dict[str, str]:
    """Client headers minus hop-by-hop and credentials, plus the tenant's upstream key and the request id."""
    out = {k: v for k, v in headers.items() if k.lower() not in _DROP_REQUEST}
    out["content-type"] = "application/json"
    out["x-request-id"] = request_id
    if api_key:
        out["authorization"] = f"Bearer {api_key}"
    return out


def forward_response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Upstream response headers that are safe to relay (rate-limit hints, processing time …)."""
    return {k: v for k, v in headers.items() if k.lower() not in _DROP_RESPONSE}


@dataclass(frozen=True)
class _ClientKey:
    base_url: str
    connect: float
    read: float
    write: float
    pool: float
    # LiteLLM upstreams get one client per tenant: its transport holds that tenant's model map and secrets.
    tenant: str = ""
    fingerprint: str = ""


# tenant -> model name -> dotted key -> resolved env value (``PolicySet.upstream_model_secrets``)
ModelSecrets = Callable[[str], Mapping[str, Mapping[str, str]]]


class UpstreamClient(httpx.AsyncClient):
    """A pooled upstream client that names its transport, so ``send`` can use it directly."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **options: Any) -> None:
        super().__init__(transport=transport, **options)
        self.upstream_transport = transport


class UpstreamPool:
    """One pooled ``httpx.AsyncClient`` per distinct upstream (base URL + timeouts)."""

    def __init__(
        self, transport: httpx.AsyncBaseTransport | None = None, *, model_secrets: ModelSecrets | None = None
    ) -> None:
        self._transport = transport
        self._model_secrets = model_secrets or (lambda tenant: {})
        self._clients: dict[_ClientKey, httpx.AsyncClient] = {}
        self._lock = asyncio.Lock()

    async def client_for(self, policy: Policy) -> httpx.AsyncClient:
        """The shared client for ``policy``'s upstream, created on first use."""
        key = _key(policy, self._model_secrets)
        async with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = UpstreamClient(
                    base_url=key.base_url.rstrip("/") + "/",
                    timeout=httpx.Timeout(connect=key.connect, read=key.read, write=key.write, pool=key.pool),
                    transport=self._transport_for(policy),
                    follow_redirects=False,
                    trust_env=False,  # an HTTP(S)_PROXY in the environment must not silently reroute tenants
                    # Tenants share a client per upstream: a cookie set in one tenant's answer must never be
                    # sent with another tenant's request, so the client's jar accepts none.
                    cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                )
                self._clients[key] = client
            return client

    def _transport_for(self, policy: Policy) -> httpx.AsyncBaseTransport:
        """The injected transport, litellm's for ``provider: litellm``, else aiohttp's connection pool."""
        if isinstance(policy.upstream, LiteLLMUpstream):
            from crest_proxy.upstream.litellm_transport import LiteLLMTransport

            return LiteLLMTransport(policy.upstream, self._model_secrets(policy.tenant))
        if self._transport is not None:
            return self._transport
        from crest_proxy.upstream.aiohttp_transport import AiohttpTransport

        return AiohttpTransport(limits=UPSTREAM_LIMITS)

    async def aclose(self) -> None:
        """Close every pooled client."""
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)


def _key(policy: Policy, model_secrets: ModelSecrets) -> _ClientKey:
    up = policy.upstream
    t = up.timeout
    if isinstance(up, LiteLLMUpstream):
        # A reloaded policy or rotated secret must get a fresh transport; only a digest is kept here.
        secrets = model_secrets(policy.tenant)
        state = json.dumps([up.model_dump(mode="json"), secrets], sort_keys=True, default=dict)
        digest = hashlib.sha256(state.encode()).hexdigest()
        return _ClientKey(LITELLM_BASE_URL, t.connect, t.read, t.write, t.pool, policy.tenant, digest)
    return _ClientKey(str(up.base_url), t.connect, t.read, t.write, t.pool)


def map_transport_error(exc: httpx.HTTPError) -> UpstreamError:
    """The OpenAI-style error for a failed upstream exchange (never leaks headers or keys)."""
    _log_cause(exc)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"The upstream did not answer in time ({type(exc).__name__}).")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamError("The upstream could not be reached (connection failed).")
    return UpstreamError(f"The upstream exchange failed ({type(exc).__name__}).")


def _log_cause(exc: httpx.HTTPError) -> None:
    """Tell the operator which upstream failed and how (host and error classes only: no URL, no headers).

    The client only sees "could not be reached"; without this line a DNS failure, a refused port and a
    TLS error look alike in the logs (issue 17).
    """
    try:
        url = exc.request.url
        host = f"{url.host}:{url.port or {'https': 443, 'http': 80}.get(url.scheme, url.scheme)}"
    except RuntimeError:  # an error raised before a request existed
        host = "?"
    cause = exc.__cause__ or exc.__context__
    detail = f" caused by {type(cause).__module__}.{type(cause).__name__}" if cause is not None else ""
    _log.warning("upstream %s failed: %s%s", host, type(exc).__name__, detail)


async def post_json(
    client: httpx.AsyncClient,
    path: str,
    body: Mapping[str, object],
    headers: Mapping[str, str],
    *,
    total_s: float,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> UpstreamAnswer:
    """POST JSON upstream and read the whole answer (at most ``max_bytes``) within ``total_s``.

    Failures become ``UpstreamError``; the answer comes back with the tenant's upstream key masked.
    """
    request = client.build_request("POST", path, json=body, headers=dict(headers))
    return await _exchange(client, request, total_s=total_s, max_bytes=max_bytes)


async def get(
    client: httpx.AsyncClient,
    path: str,
    headers: Mapping[str, str],
    *,
    total_s: float,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> UpstreamAnswer:
    """GET from the upstream within ``total_s``, like ``post_json``."""
    request = client.build_request("GET", path, headers=dict(headers))
    return await _exchange(client, request, total_s=total_s, max_bytes=max_bytes)


async def _exchange(
    client: httpx.AsyncClient, request: httpx.Request, *, total_s: float, max_bytes: int
) -> UpstreamAnswer:
    try:
        return await asyncio.wait_for(_read_capped(client, request, max_bytes), total_s)
    except asyncio.TimeoutError as exc:
        raise UpstreamTimeoutError(f"The upstream did not finish answering within {total_s:g}s.") from exc
    except httpx.HTTPError as exc:
        raise map_transport_error(exc) from exc


async def _read_capped(client: httpx.AsyncClient, request: httpx.Request, max_bytes: int) -> UpstreamAnswer:
    """The whole answer, refused (502 ``upstream_too_large``) as soon as it grows past ``max_bytes``."""
    return await read_answer(await send(client, request), max_bytes)


async def send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """``client.send(request, stream=True)``; for the pool's own clients, straight through the transport.

    Upstream clients follow no redirects, authenticate with headers and keep no cookies, so the client's
    auth, redirect, cookie and hook machinery around the transport does nothing for them, at a cost of a
    few per cent of the proxy's pass-through CPU (issue 13's budget).
    """
    if not isinstance(client, UpstreamClient):
        return await client.send(request, stream=True)
    response = await client.upstream_transport.handle_async_request(request)
    response.request = request  # as the client's send does (the LiteLLM transport leaves it unset)
    return response


async def read_answer(response: httpx.Response, max_bytes: int = MAX_ANSWER_BYTES) -> UpstreamAnswer:
    """Read an opened (streamed) answer whole, at most ``max_bytes``, with the key masked."""
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise too_large(f"declares {int(declared)} bytes", max_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # decoded: a compressed bomb is counted as it expands
            size += len(chunk)
            if size > max_bytes:
                raise too_large(f"is over {max_bytes} bytes", max_bytes)
            chunks.append(chunk)
    finally:
        await response.aclose()
    return masked(response, b"".join(chunks))


def too_large(what: str, limit: int) -> UpstreamError:
    """The 502 for an upstream answer (or stream event) past its size limit."""
    return UpstreamError(
        f"The upstream's answer {what}, past this gateway's limit of {limit} bytes.",
        code="upstream_too_large",
    )


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, path: str, body: Mapping[str, object], headers: Mapping[str, str]
) -> AsyncIterator[httpx.Response]:
    """Open a streaming POST upstream; the response is closed (connection released) on exit."""
    request = client.build_request("POST", path, json=body, headers=dict(headers))
    try:
        response = await send(client, request)
    except httpx.HTTPError as exc:
        raise map_transport_error(exc) from exc
    try:
        yield response
    finally:
        await response.aclose()

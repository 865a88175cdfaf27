"""The default transport of OpenAI-compatible upstreams: httpx's API on aiohttp's connection pool.

Why: the proxy keeps httpx as its client API (``httpx.MockTransport`` / ``ASGITransport`` in tests, the
LiteLLM transport, one error vocabulary), but httpx's own pool (httpcore) costs more CPU than everything
else the proxy does. Measured with ``benchmarks/load.py``'s setup and the no-op classifier, 32 clients on
2 cores: 4.95 ms of proxy CPU a request with httpcore, 1.72 ms with this transport.

Why not the ``httpx-aiohttp`` package: its 0.2 release maps every ``aiohttp.ClientConnectionError`` to
``httpx.ConnectTimeout``, so an upstream that drops the connection mid-answer would be reported to clients
as a timeout. Here each aiohttp failure maps to the httpx error that httpcore would have raised.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import certifi
import httpx

# Most specific first: the first match wins (ConnectionTimeoutError is also a ServerTimeoutError, …).
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    # Any other timeout is aiohttp's ``connect`` budget running out while waiting for a pooled connection.
    (asyncio.TimeoutError, httpx.PoolTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # body cut short or malformed framing
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not a valid HTTP response
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientError, httpx.NetworkError),  # resets and other socket errors
    (OSError, httpx.NetworkError),
)


def _mapped(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    for source, target in _ERRORS:
        if isinstance(exc, source):
            return target(f"{type(exc).__name__}: {exc}", request=request)
    return httpx.NetworkError(f"{type(exc).__name__}: {exc}", request=request)


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts in aiohttp's terms (it has no write timeout: see ``_headers_budget``).

    ``total`` stays unset: streams run as long as the upstream keeps sending, and the proxy's own
    ``upstream.timeout.total`` bounds whole answers, and the wait for each event of a stream.
    """
    t = request.extensions.get("timeout", {})
    connect, pool = t.get("connect"), t.get("pool")
    # aiohttp's ``connect`` covers waiting for a pool slot *and* connecting; httpx splits the two.
    budget = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=None, connect=budget, sock_connect=connect, sock_read=t.get("read"))


# aiohttp warns (ResourceWarning) about bodies over 1 MiB given as bytes; larger ones go in 64 KiB pieces.
_LARGE_BODY = 2**20
_PIECE = 2**16


def _payload(body: bytes) -> bytes | AsyncIterator[bytes] | None:
    """What aiohttp sends: small bodies as they are, large ones piece by piece (httpx set content-length)."""
    if not body:
        return None
    return body if len(body) <= _LARGE_BODY else _pieces(body)


async def _pieces(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), _PIECE):
        yield body[start : start + _PIECE]


def _headers_budget(request: httpx.Request) -> float | None:
    """How long connecting, sending the body and waiting for the answer's headers may take in all.

    aiohttp has no write timeout, and its read timeout only starts once the body is sent: an upstream
    that accepts the connection but never reads would hold a large request forever. Each phase has its
    own httpx limit, so an exchange that keeps to all of them reaches the headers within their sum.
    """
    t = request.extensions.get("timeout", {})
    phases = [t.get("connect"), t.get("pool"), t.get("write"), t.get("read")]
    return None if any(p is None for p in phases) else float(sum(phases))


class _Body(httpx.AsyncByteStream):
    """The upstream's body as it arrives (SSE frames are relayed without waiting for a buffer to fill)."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            raise _mapped(exc, self._request) from exc

    async def aclose(self) -> None:
        # A body read to its end hands the connection back to the pool; one abandoned half-way (a client
        # that went away, a stream stopped by the guard) must close it, or the rest would be read as the
        # next answer.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport that sends requests through one pooled ``aiohttp.ClientSession``.

    The session is made on first use, inside the running event loop (aiohttp binds it to that loop).
    It never stores cookies: one upstream is shared by many tenants, and a cookie one tenant's answer set
    must not ride along on another tenant's request.
    """

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | None = None) -> None:
        self._limits = limits
        self._ssl = verify
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            keepalive_timeout=self._limits.keepalive_expiry or 5.0,
            # httpx verifies against certifi's CA bundle; keep that, so switching transports trusts the same.
            ssl=self._ssl or ssl.create_default_context(cafile=certifi.where()),
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # httpx decodes, from the headers it is handed
            trust_env=False,  # an HTTP(S)_PROXY in the environment must not silently reroute tenants
            timeout=aiohttp.ClientTimeout(total=None),
            # httpx has already set every header it wants sent; aiohttp must not add its own defaults.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        sending = self._session.request(
            request.method,
            str(request.url),
            headers=headers,
            data=_payload(body),
            allow_redirects=False,
            timeout=_timeout(request),
        )
        budget = _headers_budget(request)
        # asyncio's own deadline: anyio's cancel scope cost more per request than the rest of this method.
        deadline = asyncio.timeout(budget)
        try:
            async with deadline:
                response = await sending
        except Exception as exc:
            if deadline.expired() and isinstance(exc, TimeoutError):
                # Our own deadline, not one of aiohttp's: the request body could not be sent in time.
                raise httpx.WriteTimeout(
                    f"no answer headers within connect + pool + write + read ({budget:g}s)", request=request
                ) from None
            raise _mapped(exc, request) from exc
        version = response.version
        extensions: dict[str, object] = {
            "http_version": f"HTTP/{version.major}.{version.minor}".encode() if version else b"HTTP/1.1",
        }
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

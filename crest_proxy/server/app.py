"""``create_app``: the only composition root. Builds the gateway, owns every resource through the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crest_proxy import wire
from crest_proxy.audit.factory import build_sink
from crest_proxy.audit.sink import AuditSink
from crest_proxy.classifier.protocol import Classifier
from crest_proxy.errors import MethodNotAllowedError, NotFoundError, ProxyError
from crest_proxy.policy.files import PolicySet, load_policies
from crest_proxy.policy.reload import PolicyReloader, start_reloading
from crest_proxy.screening.guard import Guard
from crest_proxy.screening.normalize import prepare as prepare_normalization
from crest_proxy.server import anthropic as messages_api
from crest_proxy.server import probes as ops
from crest_proxy.server.access import AccessMiddleware, mint_request_id
from crest_proxy.server.closing import CloseOnErrorMiddleware
from crest_proxy.server.endpoints import routes
from crest_proxy.server.gateway import Gateway, PolicyStore, json_response
from crest_proxy.server.limits import InflightLimitMiddleware, bearer_key
from crest_proxy.server.memory import startup_objects_frozen, trimming_memory
from crest_proxy.server.metrics import Metrics
from crest_proxy.settings import ServerSettings
from crest_proxy.upstream.pool import UpstreamPool

log = logging.getLogger("crest_proxy.server.app")


def create_app(
    settings: ServerSettings,
    *,
    policies: PolicySet | None = None,
    classifier: Classifier | None = None,
    classifier_settings: Any = None,
    transport: httpx.AsyncBaseTransport | None = None,
    audit: AuditSink | None = None,
    environ: Mapping[str, str] | None = None,
    language_of: Callable[[str], str | None] | None = None,
) -> Starlette:
    """Build the proxy app; what is not passed in (policies, classifier, audit sink) is made at start-up.

    ``environ`` resolves policies' ``env:`` references on reload (default: the process environment);
    ``language_of`` replaces the bundled language identifier.
    """
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            language = await _language_identifier(settings, language_of)
            await asyncio.to_thread(prepare_normalization)  # the lookalike tables, before the first request
            app.state.gateway = await _build_gateway(
                stack, settings, policies, classifier, classifier_settings, transport, audit,
                language_of=language, metrics=metrics,
            )  # fmt: skip
            app.state.reloader = await _start_reloading(stack, settings, app.state.gateway, environ)
            await stack.enter_async_context(trimming_memory())  # freed heap back to the system (issue 14)
            stack.enter_context(startup_objects_frozen())  # the collector skips what start-up built
            log.info("crest-proxy ready: %d tenants", len(app.state.gateway.store.current.policies))
            yield

    app = Starlette(
        routes=[*routes(), *messages_api.routes(), *ops.routes(), *_console_routes(settings)],
        lifespan=lifespan,
        exception_handlers={
            ProxyError: _proxy_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    # Added first so it sits inside RequestIdMiddleware: refusals carry an x-request-id too.
    app.add_middleware(
        InflightLimitMiddleware,
        limit=settings.max_inflight,
        per_tenant=settings.max_inflight_per_tenant,
        tenant_of=lambda scope: _tenant_of(app, scope),
    )
    # Inside RequestIdMiddleware (it reads the id), outside the in-flight cap (refusals are counted too).
    app.add_middleware(AccessMiddleware, metrics=metrics, paths=[getattr(r, "path", "") for r in app.routes])
    app.add_middleware(RequestIdMiddleware)
    # Outermost of ours: an exception anywhere inside becomes a JSON 500 that says Connection: close.
    app.add_middleware(CloseOnErrorMiddleware)
    app.state.metrics = metrics
    app.state.metrics_token = settings.metrics_token
    return app


async def _build_gateway(
    stack: AsyncExitStack,
    settings: ServerSettings,
    policies: PolicySet | None,
    classifier: Classifier | None,
    classifier_settings: Any,
    transport: httpx.AsyncBaseTransport | None,
    audit: AuditSink | None,
    language_of: Callable[[str], str | None] | None = None,
    metrics: Metrics | None = None,
) -> Gateway:
    """Create (or adopt) every resource; whatever is created here is closed by ``stack`` on shutdown."""
    metrics = metrics or Metrics()
    store = PolicyStore(policies or load_policies(settings.policies_dir))
    if classifier is None:
        classifier = await _load_classifier(classifier_settings)
        stack.push_async_callback(classifier.aclose)  # type: ignore[attr-defined]
    if audit is None:
        sink = build_sink(
            settings.audit_log if settings.audit_file else None,
            db=settings.audit_db,
            spool=settings.audit_spool,
            fsync=settings.audit_fsync,
            max_bytes=settings.audit_max_bytes,
            max_age_s=settings.audit_max_age_s,
        )
        await sink.start()
        stack.push_async_callback(sink.aclose)
        audit = sink
    upstreams = UpstreamPool(transport, model_secrets=lambda t: store.current.upstream_model_secrets(t))
    stack.push_async_callback(upstreams.aclose)
    stack.callback(metrics.watch_classifier(classifier))
    stack.callback(metrics.watch_audit(audit))
    guard = Guard(
        classifier,
        timeout_s=settings.classify_timeout_s,
        language_of=language_of,
        max_screen_tokens=settings.max_screen_tokens,
    )
    return Gateway(
        settings=settings, store=store, guard=guard, audit=audit, upstreams=upstreams, metrics=metrics
    )


async def _language_identifier(
    settings: ServerSettings, given: Callable[[str], str | None] | None
) -> Callable[[str], str | None] | None:
    """The language identifier to use: the one given, the bundled one, or none (``detect_language``)."""
    if given is not None or not settings.detect_language:
        return given
    from crest_proxy.screening.language import load_language_identifier

    return await asyncio.to_thread(load_language_identifier)  # about a second: off the event loop


async def _start_reloading(
    stack: AsyncExitStack, settings: ServerSettings, gw: Gateway, environ: Mapping[str, str] | None
) -> PolicyReloader:
    """Reload policies on SIGHUP and file changes, counting each reload in the metrics."""

    def count(result: Any, policies: PolicySet) -> None:
        gw.metrics.observe_reload(result.result, result.rejected, len(policies.policies))

    reloader = PolicyReloader(settings.policies_dir, gw.store, environ=environ, on_reload=count)
    gw.metrics.tenants.set(len(gw.store.current.policies))
    await start_reloading(reloader, stack, settings.policy_poll_s)
    return reloader


async def _load_classifier(classifier_settings: Any) -> Classifier:
    from crest_proxy.classifier import ClassifierSettings, load_classifier

    chosen = classifier_settings or ClassifierSettings()
    # Loading can take minutes on first run (download, export, quantize): keep it off the event loop.
    return await asyncio.to_thread(
        load_classifier, chosen, progress=lambda msg: log.info("classifier: %s", msg)
    )


def _console_routes(settings: ServerSettings) -> list[Any]:
    """The audit console under /console, only when an admin key is set (issue 17, docs/console.md)."""
    if not settings.admin_key:
        return []
    from crest_proxy.console import reader_for
    from crest_proxy.console.app import console_routes

    reader = reader_for([settings.audit_log], None if settings.audit_file else settings.audit_db, live=True)
    return console_routes(reader, settings.admin_key)


def _tenant_of(app: Starlette, scope: Scope) -> str | None:
    """The tenant whose proxy key a request presents (None before start-up or for unknown keys)."""
    gateway = getattr(app.state, "gateway", None)
    key = bearer_key(scope)
    if gateway is None or key is None:
        return None
    policy = gateway.store.current.tenant_for_key(key)
    return None if policy is None else str(policy.tenant)


class RequestIdMiddleware:
    """Gives each request a fresh id of the proxy's own and echoes it on the response (``x-request-id``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = mint_request_id()  # a client's own x-request-id is only recorded (client_request_id)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def error_response(request: Request, exc: ProxyError) -> Response:
    """The OpenAI-style JSON error for ``exc``."""
    request_id = getattr(request.state, "request_id", "")
    return json_response(wire.error_body_for(exc), exc.status_code, request_id)


async def _proxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    return error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        mapped: ProxyError = MethodNotAllowedError(
            f"Method {request.method} is not allowed on {request.url.path}."
        )
    elif exc.status_code == 404:
        mapped = NotFoundError(
            f"Unknown request URL: {request.method} {request.url.path}.", code="unknown_url"
        )
    else:
        mapped = ProxyError(str(exc.detail))
        mapped.status_code = exc.status_code
    return error_response(request, mapped)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(request, ProxyError("The proxy hit an unexpected error; it has been logged."))

"""Operator endpoints: ``/healthz`` (process alive), ``/readyz`` (model, policies, audit) and ``/metrics``.

None of them takes a tenant key. ``/metrics`` shows tenant names and traffic volumes, so bind the proxy
where only the scraper reaches it, or set a metrics token (``serve --metrics-token-env``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crest_proxy.audit.fanout import sink_detail
from crest_proxy.audit.sink import audit_problem
from crest_proxy.errors import AuthenticationError

PATHS = ("/healthz", "/readyz", "/metrics")


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passed, and a line saying why."""

    name: str
    ok: bool
    detail: str


def readiness(state: Any) -> list[Check]:
    """Model loaded, policies loaded, audit log writable (``state`` is the app's state)."""
    gateway = getattr(state, "gateway", None)
    if gateway is None:
        return [Check(name, False, "starting up") for name in ("model", "policies", "audit")]
    return [_model(gateway.guard.classifier), _policies(state, gateway), _audit(gateway.audit)]


def _model(classifier: Any) -> Check:
    if classifier is None:
        return Check("model", False, "no classifier loaded")
    info = getattr(classifier, "info", None)
    if info is None:
        return Check("model", True, type(classifier).__name__)
    detail = f"{info.model}@{str(info.revision)[:12]} {info.backend} {info.precision}"
    health = getattr(classifier, "health", None)
    remote = health() if callable(health) else None  # backend remote: the inference server's state
    if remote is None:
        return Check("model", True, detail)
    return Check("model", remote.ok, f"{detail}; {remote.detail}")


def _policies(state: Any, gateway: Any) -> Check:
    tenants = len(gateway.store.current.policies)
    detail = f"{tenants} tenant{'s' if tenants != 1 else ''}"
    reloader = getattr(state, "reloader", None)
    last = getattr(reloader, "last", None)
    if last is not None and last.problems:
        # Still ready: every tenant keeps a valid policy (the broken files' previous ones).
        detail += f"; last reload kept previous policies for {', '.join(last.rejected) or 'the directory'}"
    return Check("policies", tenants > 0, detail if tenants else "no tenant policies loaded")


def _audit(sink: Any) -> Check:
    # Not ready while records cannot be written: fail-closed tenants would be refused (issue 14).
    problem = audit_problem(sink)
    if problem is None:
        return Check("audit", True, sink_detail(sink) + _losses(sink))
    return Check("audit", False, problem)


def _losses(sink: Any) -> str:
    stats = getattr(sink, "stats", None)
    if stats is None or not stats.lost:
        return ""
    return f"; {stats.lost} record(s) lost since start ({stats.gaps} gap note(s) on the chain)"


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 while the process serves requests."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """``GET /readyz``: 200 when every check passes, else 503; the body lists every check."""
    checks = readiness(request.app.state)
    ready = all(c.ok for c in checks)
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: the Prometheus exposition (behind ``Bearer <metrics token>`` when one is set)."""
    token = request.app.state.metrics_token
    if token is not None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            raise AuthenticationError("GET /metrics needs 'Authorization: Bearer <metrics token>'.")
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)


def routes() -> list[Route]:
    """The operator routes."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]

"""A running crest-proxy (real uvicorn on loopback) in front of a fake upstream, for end-to-end tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml
from starlette.applications import Starlette
from starlette.types import ASGIApp

from crest_proxy.audit.sink import AuditSink, JsonlAuditSink
from crest_proxy.classifier.protocol import Classifier
from crest_proxy.policy.files import load_policies
from crest_proxy.server.app import create_app
from crest_proxy.settings import ServerSettings
from tests.support.servers import serve
from tests.support.upstream import FakeUpstream

UPSTREAM_KEY = "sk-upstream-secret-0123456789"

EMAIL_RULE = {"name": "email", "pattern": r"[\w.+-]+@[\w-]+\.[\w.]+", "action": "redact"}

# One tenant per behaviour under test (the upstream section is added by ``write_policies``).
TENANTS: dict[str, dict[str, Any]] = {
    "blocker": {
        "inbound": {"action": "block", "threshold": 0.5},
        "outbound": {"action": "block", "threshold": 0.5},
        "rules": [EMAIL_RULE, {"name": "openai_key", "pattern": "sk-[A-Za-z0-9]{20,}", "action": "block"}],
        "block": {"message": "Blocked by policy."},
    },
    "redactor": {
        "inbound": {"action": "redact"},
        "outbound": {"action": "redact"},
        "rules": [EMAIL_RULE],
        "redaction": {"placeholder": "[gone]"},
        "audit": {"content": "full"},
    },
    "logger": {"inbound": {"action": "log"}, "outbound": {"action": "log"}, "audit": {"content": "redacted"}},
    "refuser": {"block": {"style": "refusal", "message": "I can't help with that."}},
    "picky": {
        "upstream": {"models": ["gpt-4o-mini"], "aliases": {"fast": "gpt-4o-mini"}},
        "inbound": {"action": "block", "roles": ["user"]},
        "audit": {"content": "none"},
    },
    "failopen": {"on_error": "allow"},
}


def key_of(tenant: str) -> str:
    """The proxy key a test client presents for ``tenant``."""
    return f"sk-proxy-{tenant}-key"


def write_policies(directory: Path, upstream_url: str) -> dict[str, str]:
    """Write the test tenants' YAML files; returns the environment their ``env:`` keys resolve from."""
    environ = {"UPSTREAM_KEY": UPSTREAM_KEY}
    for tenant, spec in TENANTS.items():
        upstream = {
            "base_url": f"{upstream_url}/v1",
            "api_key": "env:UPSTREAM_KEY",
            **spec.get("upstream", {}),
        }
        doc = {**spec, "tenant": tenant, "keys": [f"env:{tenant.upper()}_KEY"], "upstream": upstream}
        (directory / f"{tenant}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
        environ[f"{tenant.upper()}_KEY"] = key_of(tenant)
    return environ


@dataclass
class Harness:
    """Handles on a running proxy and its fake upstream."""

    proxy_url: str
    upstream: FakeUpstream
    audit_path: Path
    audit: JsonlAuditSink
    policy_dir: Path | None = None
    environ: dict[str, str] | None = None  # what the policies' env: references resolve from
    app: Any = None
    # SDK clients handed out, closed with the harness: a client a test leaves open would otherwise close its
    # pooled socket at garbage collection, warning (an error here) in whichever test runs then.
    opened: list[openai.OpenAI] = field(default_factory=list)

    def client(self, tenant: str = "blocker", **kwargs: Any) -> openai.OpenAI:
        """A real OpenAI SDK client pointed at the proxy as ``tenant`` (closed with the harness)."""
        sdk = openai.OpenAI(base_url=f"{self.proxy_url}/v1", api_key=key_of(tenant), max_retries=0, **kwargs)
        self.opened.append(sdk)
        return sdk

    def close_clients(self) -> None:
        """Close every SDK client this harness handed out."""
        for sdk in self.opened:
            sdk.close()
        self.opened.clear()

    def async_client(self, tenant: str = "blocker", **kwargs: Any) -> openai.AsyncOpenAI:
        """A real async OpenAI SDK client pointed at the proxy as ``tenant``."""
        return openai.AsyncOpenAI(
            base_url=f"{self.proxy_url}/v1", api_key=key_of(tenant), max_retries=0, **kwargs
        )

    def post(self, path: str, body: Any, tenant: str | None = "blocker", **kwargs: Any) -> httpx.Response:
        """A raw HTTP POST to the proxy (for requests the SDK refuses to build)."""
        headers = {"authorization": f"Bearer {key_of(tenant)}"} if tenant else {}
        headers.update(kwargs.pop("headers", {}))
        content = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return httpx.post(f"{self.proxy_url}{path}", content=content, headers=headers, timeout=30, **kwargs)

    def audit_text(self) -> str:
        """The audit log as it stands once every record queued so far is written."""
        self.audit.flush_sync()
        return self.audit_path.read_text()

    def records(self) -> list[dict[str, Any]]:
        """Every audit record written so far."""
        return [json.loads(line) for line in self.audit_text().splitlines() if line]

    def records_for(self, request_id: str) -> list[dict[str, Any]]:
        """The audit records of one request."""
        return [r for r in self.records() if r["request_id"] == request_id]


@contextmanager
def running_proxy(
    tmp: Path,
    classifier: Classifier,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    language_of: Callable[[str], str | None] | None = None,
    upstream: FakeUpstream | None = None,
    **overrides: Any,
) -> Iterator[Harness]:
    """Start the fake upstream (``upstream``, or a fresh one) and crest-proxy on loopback.

    ``overrides`` are ``ServerSettings`` fields (``policy_poll_s=0.1``, ``metrics_token="t"`` …).
    """
    fake = upstream or FakeUpstream()
    with ExitStack() as stack:
        upstream_url = stack.enter_context(serve(fake.app()))
        policy_dir = tmp / "policies"
        policy_dir.mkdir()
        audit_path = tmp / "audit.jsonl"
        defaults: dict[str, Any] = {"audit_log": audit_path, "max_body_bytes": 256 * 1024}
        app, environ = proxy_app(
            policy_dir, upstream_url, classifier, transport=transport, language_of=language_of,
            **{**defaults, **overrides},
        )  # fmt: skip
        proxy_url = stack.enter_context(serve(app))
        audit = app.state.gateway.audit
        harness = Harness(proxy_url, fake, audit_path, audit, policy_dir=policy_dir, environ=environ, app=app)
        try:
            yield harness
        finally:
            harness.close_clients()


def proxy_app(
    policy_dir: Path,
    upstream_url: str,
    classifier: Classifier,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    audit: AuditSink | None = None,
    language_of: Callable[[str], str | None] | None = None,
    upstreams: Mapping[str, Mapping[str, Any]] | None = None,
    **overrides: Any,
) -> tuple[Starlette, dict[str, str]]:
    """crest-proxy for the test tenants (not started) and the environment their ``env:`` keys read.

    ``upstreams`` changes tenants' ``upstream`` sections (``{"blocker": {"timeout": {"read": 0.5}}}``);
    ``overrides`` are ``ServerSettings`` fields.
    """
    environ = write_policies(policy_dir, upstream_url)
    for tenant, changes in (upstreams or {}).items():
        path = policy_dir / f"{tenant}.yaml"
        doc = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**doc, "upstream": {**doc["upstream"], **changes}}))
    app = create_app(
        ServerSettings(policies_dir=policy_dir, **overrides),
        policies=load_policies(policy_dir, environ=environ),
        classifier=classifier,
        transport=transport,
        audit=audit,
        environ=environ,
        language_of=language_of,
    )
    return app, environ


class LoopbackClient(httpx.Client):
    """An httpx client of ``app`` served by uvicorn on loopback while the ``with`` block runs."""

    def __init__(self, app: ASGIApp, **kwargs: Any) -> None:
        super().__init__(base_url="http://127.0.0.1", timeout=30, **kwargs)
        self._app, self._served = app, ExitStack()

    def __enter__(self) -> LoopbackClient:
        self.base_url = httpx.URL(self._served.enter_context(serve(self._app)))
        super().__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        super().__exit__(*exc_info)
        self._served.close()

"""A running crest-proxy (real uvicorn on loopback) in front of a fake upstream, for end-to-end tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

from crest_proxy.audit.sink import JsonlAuditSink
from crest_proxy.classifier.protocol import Classifier
from crest_proxy.policy.files import load_policies
from crest_proxy.server.app import create_app
from crest_proxy.settings import ServerSettings
from tests.fake_upstream import FakeUpstream
from tests.servers import serve

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

    def client(self, tenant: str = "blocker", **kwargs: Any) -> openai.OpenAI:
        """A real OpenAI SDK client pointed at the proxy as ``tenant``."""
        return openai.OpenAI(base_url=f"{self.proxy_url}/v1", api_key=key_of(tenant), max_retries=0, **kwargs)

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
    **overrides: Any,
) -> Iterator[Harness]:
    """Start the fake upstream and crest-proxy (with the given classifier) on loopback.

    ``overrides`` are ``ServerSettings`` fields (``policy_poll_s=0.1``, ``metrics_token="t"`` …).
    """
    fake = FakeUpstream()
    with ExitStack() as stack:
        upstream_url = stack.enter_context(serve(fake.app()))
        policy_dir = tmp / "policies"
        policy_dir.mkdir()
        environ = write_policies(policy_dir, upstream_url)
        policies = load_policies(policy_dir, environ=environ)
        audit_path = tmp / "audit.jsonl"
        defaults: dict[str, Any] = {"audit_log": audit_path, "max_body_bytes": 256 * 1024}
        settings = ServerSettings(policies_dir=policy_dir, **{**defaults, **overrides})
        app = create_app(
            settings,
            policies=policies,
            classifier=classifier,
            transport=transport,
            environ=environ,
            language_of=language_of,
        )
        proxy_url = stack.enter_context(serve(app))
        audit = app.state.gateway.audit
        yield Harness(proxy_url, fake, audit_path, audit, policy_dir=policy_dir, environ=environ, app=app)

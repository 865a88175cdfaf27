"""crest-proxy on loopback in front of a fake Anthropic upstream, with tenants for the Messages API tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import yaml

from crest_proxy.audit.sink import JsonlAuditSink
from crest_proxy.classifier.protocol import Classifier
from crest_proxy.policy.files import load_policies
from crest_proxy.server.app import create_app
from crest_proxy.settings import ServerSettings
from tests.fake_anthropic import FakeAnthropic
from tests.support.servers import serve

UPSTREAM_KEY = "sk-ant-upstream-secret-0123456789"
EMAIL_RULE = {"name": "email", "pattern": r"[\w.+-]+@[\w-]+\.[\w.]+", "action": "redact"}
TENANTS: dict[str, dict[str, Any]] = {
    "claude": {"rules": [EMAIL_RULE], "block": {"message": "Blocked by policy."}},
    "redactor": {
        "inbound": {"action": "redact"},
        "outbound": {"action": "redact"},
        "rules": [EMAIL_RULE],
        "redaction": {"placeholder": "[gone]"},
    },
    "refuser": {"block": {"style": "refusal", "message": "I can't help with that."}},
    "picky": {"upstream": {"models": ["claude-ok"], "aliases": {"fast": "claude-ok"}}},
    # An OpenAI-compatible upstream that also serves /v1/messages (vLLM, a LiteLLM proxy …): Bearer key.
    "compat": {"upstream": {"provider": "openai"}},
    "nomedia": {"inbound": {"media_inputs": "block"}},  # images and documents refused, not passed unread
}


def key_of(tenant: str) -> str:
    """The proxy key a test client presents for ``tenant``."""
    return f"sk-proxy-{tenant}-key"


@dataclass
class AnthropicHarness:
    """Handles on a running proxy and its fake Anthropic upstream."""

    url: str
    fake: FakeAnthropic
    audit: JsonlAuditSink
    app: Any
    opened: list[anthropic.Anthropic] = field(default_factory=list)  # closed with the harness (see Harness)

    def client(self, tenant: str = "claude", **kwargs: Any) -> anthropic.Anthropic:
        """The real Anthropic SDK pointed at the proxy (it appends ``/v1`` itself)."""
        sdk = anthropic.Anthropic(base_url=self.url, api_key=key_of(tenant), max_retries=0, **kwargs)
        self.opened.append(sdk)
        return sdk

    def async_client(self, tenant: str = "claude", **kwargs: Any) -> anthropic.AsyncAnthropic:
        """The real async Anthropic SDK pointed at the proxy."""
        return anthropic.AsyncAnthropic(base_url=self.url, api_key=key_of(tenant), max_retries=0, **kwargs)

    def post(
        self, body: Any, tenant: str = "claude", path: str = "/v1/messages", **headers: str
    ) -> httpx.Response:
        """A raw POST (for requests the SDK refuses to build)."""
        sent = {"x-api-key": key_of(tenant), "anthropic-version": "2023-06-01", **headers}
        content = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return httpx.post(f"{self.url}{path}", content=content, headers=sent, timeout=30)

    def records_for(self, request_id: str) -> list[dict[str, Any]]:
        """The audit records of one request."""
        self.audit.flush_sync()
        lines = self.audit.path.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["request_id"] == request_id]


@contextmanager
def running_anthropic_proxy(
    tmp: Path, classifier: Classifier, *, transport: httpx.AsyncBaseTransport | None = None
) -> Iterator[AnthropicHarness]:
    """The fake Anthropic upstream and crest-proxy (``provider: anthropic`` tenants) on loopback."""
    fake = FakeAnthropic()
    with ExitStack() as stack:
        upstream_url = stack.enter_context(serve(fake.app()))
        policy_dir = tmp / "policies"
        policy_dir.mkdir()
        environ = {"UPSTREAM_KEY": UPSTREAM_KEY}
        for tenant, spec in TENANTS.items():
            upstream = {
                "provider": "anthropic",
                "base_url": f"{upstream_url}/v1",
                "api_key": "env:UPSTREAM_KEY",
            }
            doc = {**spec, "tenant": tenant, "keys": [f"env:{tenant.upper()}_KEY"]}
            doc["upstream"] = {**upstream, **spec.get("upstream", {})}
            (policy_dir / f"{tenant}.yaml").write_text(yaml.safe_dump(doc))
            environ[f"{tenant.upper()}_KEY"] = key_of(tenant)
        settings = ServerSettings(
            policies_dir=policy_dir, audit_log=tmp / "audit.jsonl", max_body_bytes=256 * 1024
        )
        policies = load_policies(policy_dir, environ=environ)
        app = create_app(
            settings, policies=policies, classifier=classifier, transport=transport, environ=environ
        )
        url = stack.enter_context(serve(app))
        harness = AnthropicHarness(url, fake, app.state.gateway.audit, app)
        try:
            yield harness
        finally:
            for sdk in harness.opened:
                sdk.close()

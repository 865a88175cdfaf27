"""``/healthz`` and ``/readyz``: liveness, and readiness from model, policies and audit log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import httpx

from crest_proxy.audit.sink import JsonlAuditSink
from crest_proxy.policy.files import PolicySet, load_policies
from crest_proxy.screening.guard import Guard
from crest_proxy.server.endpoints import PolicyStore
from crest_proxy.server.probes import readiness
from tests.support.classifiers import safe_classifier
from tests.support.harness import key_of, proxy_app, running_proxy, write_policies
from tests.support.servers import serve
from tests.support.upstream import FakeUpstream


def test_healthz_and_readyz_when_everything_is_up(tmp_path: Path) -> None:
    with running_proxy(tmp_path, safe_classifier(), detect_language=False) as h:  # type: ignore[arg-type]
        health = httpx.get(f"{h.proxy_url}/healthz")
        ready = httpx.get(f"{h.proxy_url}/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {
            "model": {"ok": True, "detail": "FakeClassifier"},
            "policies": {"ok": True, "detail": "6 tenants"},
            "audit": {"ok": True, "detail": str(tmp_path / "audit.jsonl")},
        },
    }
    assert "x-request-id" in ready.headers


class FullDisk:
    """A file whose writes fail: the disk is full."""

    def write(self, data: str) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None: ...

    def close(self) -> None: ...


def test_readyz_is_503_naming_the_audit_problem_when_records_cannot_be_written(tmp_path: Path) -> None:
    fake = FakeUpstream()
    with serve(fake.app()) as upstream_url:
        sink = JsonlAuditSink(tmp_path / "audit.jsonl", opener=lambda path: FullDisk())  # type: ignore[arg-type,return-value]
        asyncio.run(sink.start())
        app, _ = proxy_app(
            tmp_path, upstream_url, safe_classifier(), audit=sink, audit_log=sink.path, detect_language=False
        )
        with serve(app) as proxy_url:
            assert httpx.get(f"{proxy_url}/readyz").status_code == 200  # nothing written yet
            response = httpx.post(
                f"{proxy_url}/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {key_of('blocker')}"},
            )
            assert response.status_code == 200  # the request is served; its records are counted as lost
            sink.flush_sync()
            ready = httpx.get(f"{proxy_url}/readyz")
            metrics = httpx.get(f"{proxy_url}/metrics").text
        asyncio.run(sink.aclose())
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["audit"] == {
        "ok": False,
        "detail": "the last write failed: [Errno 28] No space left on device",
    }
    assert body["checks"]["model"]["ok"] and body["checks"]["policies"]["ok"]
    assert "crest_audit_lost_records_total 2.0" in metrics  # the inbound and the outbound record


async def test_readiness_before_start_up_and_once_the_audit_log_is_closed(tmp_path: Path) -> None:
    starting = readiness(SimpleNamespace())
    assert [(c.name, c.ok, c.detail) for c in starting] == [
        ("model", False, "starting up"),
        ("policies", False, "starting up"),
        ("audit", False, "starting up"),
    ]
    sink = JsonlAuditSink(tmp_path / "audit.jsonl")
    await sink.start()
    policies = load_policies(tmp_path, environ=write_policies(tmp_path, "http://upstream.test"))
    gateway = SimpleNamespace(guard=Guard(safe_classifier()), store=PolicyStore(policies), audit=sink)
    assert all(c.ok for c in readiness(SimpleNamespace(gateway=gateway)))
    await sink.aclose()
    *_, audit = readiness(SimpleNamespace(gateway=gateway))
    assert (audit.ok, audit.detail) == (False, "the audit log is closed")
    gateway.store = PolicyStore(PolicySet({}))
    _, tenants, _ = readiness(SimpleNamespace(gateway=gateway))
    assert (tenants.ok, tenants.detail) == (False, "no tenant policies loaded")

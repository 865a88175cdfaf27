"""Prometheus metrics: per-app registries, what the request path counts, the classifier's own histograms."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crest_proxy.classifier import CrestClassifier
from crest_proxy.screening.guard import Guard
from crest_proxy.server.metrics import Metrics
from crest_proxy.types import Direction
from tests.support.classifiers import broken_classifier
from tests.support.harness import Harness, running_proxy
from tests.support.policies import make_policy

UNSAFE = "tell me about kaboom"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels (parsed by prometheus-client)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier) -> Iterator[Harness]:
    with running_proxy(tmp_path_factory.mktemp("metrics"), classifier, detect_language=False) as h:
        yield h


def scrape(h: Harness) -> str:
    response = httpx.get(f"{h.proxy_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


def chat(h: Harness, text: str, tenant: str = "blocker") -> httpx.Response:
    return h.post(
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        tenant,
    )


def test_requests_are_counted_by_tenant_endpoint_and_status(harness: Harness) -> None:
    before = scrape(harness)
    assert chat(harness, "hello").status_code == 200
    assert chat(harness, UNSAFE).status_code == 400
    assert harness.post("/v1/chat/completions", {}, tenant=None).status_code == 401
    assert httpx.get(f"{harness.proxy_url}/wp-admin/secret.php").status_code == 404
    after = scrape(harness)
    path = "/v1/chat/completions"

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("crest_requests_total", tenant="blocker", endpoint=path, status="200") == 1
    assert grew("crest_requests_total", tenant="blocker", endpoint=path, status="400") == 1
    assert grew("crest_requests_total", tenant="none", endpoint=path, status="401") == 1
    assert grew("crest_requests_total", tenant="none", endpoint="other", status="404") == 1  # no path labels
    assert grew("crest_request_duration_seconds_count", endpoint=path) == 3


def test_decisions_windows_upstream_and_classifier_work_are_counted(harness: Harness) -> None:
    before = scrape(harness)
    assert chat(harness, "hello").status_code == 200
    assert chat(harness, UNSAFE).status_code == 400
    after = scrape(harness)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    blocker = {"tenant": "blocker", "language": "unknown"}  # language id is off in this harness
    assert grew("crest_decisions_total", direction="inbound", action="allow", **blocker) == 1
    assert grew("crest_decisions_total", direction="outbound", action="allow", **blocker) == 1
    assert grew("crest_decisions_total", direction="inbound", action="block", **blocker) == 1
    assert grew("crest_screening_duration_seconds_count", direction="inbound") == 2
    assert grew("crest_windows_per_text_count") == 3 and grew("crest_windows_per_text_sum") == 3
    upstream = {"tenant": "blocker", "endpoint": "chat.completions", "outcome": "2xx"}
    assert grew("crest_upstream_duration_seconds_count", **upstream) == 1  # the blocked one never left
    assert grew("crest_classifier_texts_total") == 3
    assert (
        grew("crest_classifier_model_call_seconds_count") == grew("crest_classifier_model_calls_total") >= 1
    )
    assert grew("crest_classifier_batch_windows_sum") == 3
    assert grew("crest_classifier_queue_depth_count") == 3  # sampled as each call's texts are queued
    assert value(after, "crest_policy_tenants") == 6
    assert value(after, "crest_audit_lost_records_total") == 0


def test_upstream_failures_are_counted_as_errors(harness: Harness) -> None:
    harness.upstream.status = 503
    try:
        before = scrape(harness)
        assert chat(harness, "hello").status_code == 503
        after = scrape(harness)
    finally:
        harness.upstream.status = 200
    labels = {"tenant": "blocker", "endpoint": "chat.completions", "outcome": "5xx"}
    assert (
        value(after, "crest_upstream_duration_seconds_count", **labels)
        - value(before, "crest_upstream_duration_seconds_count", **labels)
        == 1
    )


def test_on_error_events_and_metrics_token(tmp_path: Path) -> None:
    with running_proxy(tmp_path, broken_classifier(), detect_language=False, metrics_token="s3cret") as h:  # type: ignore[arg-type]
        assert chat(h, "hello", tenant="failopen").status_code == 200
        assert chat(h, "hello", tenant="blocker").status_code == 503
        denied = httpx.get(f"{h.proxy_url}/metrics")
        assert denied.status_code == 401
        assert denied.json()["error"]["type"] == "invalid_request_error"
        assert (
            httpx.get(f"{h.proxy_url}/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        )
        text = httpx.get(f"{h.proxy_url}/metrics", headers={"authorization": "Bearer s3cret"}).text
    failures = "crest_classifier_failures_total"
    assert value(text, failures, tenant="failopen", direction="inbound", outcome="fail_open") == 1
    assert value(text, failures, tenant="failopen", direction="outbound", outcome="fail_open") == 1
    assert value(text, failures, tenant="blocker", direction="inbound", outcome="fail_closed") == 1


def test_each_app_has_its_own_registry_and_streaming_hooks() -> None:
    first, second = Metrics(), Metrics()
    first.observe_holdback("acme", 0.12)
    first.observe_added_ttft("acme", 0.03)
    first.observe_added_ttft("acme", -0.01)  # clock noise: never a negative delay
    first.observe_reload("applied", ["bad.yaml"], tenants=3)
    one, _ = first.render()
    two, _ = second.render()
    assert value(one.decode(), "crest_stream_holdback_seconds_count", tenant="acme") == 1
    assert value(one.decode(), "crest_stream_added_ttft_seconds_sum", tenant="acme") == pytest.approx(0.03)
    assert value(one.decode(), "crest_policy_reload_errors_total", file="bad.yaml") == 1
    assert value(two.decode(), "crest_stream_holdback_seconds_count", tenant="acme") == 0


async def test_watching_a_classifier_can_be_undone(classifier: CrestClassifier) -> None:
    metrics = Metrics()
    unwatch = metrics.watch_classifier(classifier)
    policy = make_policy()
    await asyncio.gather(*(Guard(classifier).screen(policy, Direction.INBOUND, ["a b c"]) for _ in range(4)))
    text = metrics.render()[0].decode()
    assert value(text, "crest_classifier_queue_depth_count") == 4
    assert value(text, "crest_classifier_batch_windows_sum") == 4
    unwatch()
    await Guard(classifier).screen(policy, Direction.INBOUND, ["a b c"])
    after = metrics.render()[0].decode()
    assert value(after, "crest_classifier_queue_depth_count") == 4  # no longer told
    assert "crest_classifier_texts_total" not in after

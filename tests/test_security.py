"""Security: tenant isolation, no leaked upstream keys, constant-time key checks, unforgeable audit lines."""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path

import openai
import pytest

from crest_proxy.policy.files import load_policies
from tests.support.harness import UPSTREAM_KEY, Harness, key_of, write_policies


@pytest.fixture(autouse=True)
def _reset(harness: Harness) -> None:
    harness.upstream.status, harness.upstream.error, harness.upstream.raw_body = 200, None, None
    harness.upstream.received.clear()


def test_one_tenants_key_never_selects_another_tenants_policy(harness: Harness) -> None:
    # The same unsafe prompt: the logger tenant forwards it, the blocker tenant blocks it.
    logger = harness.client("logger").chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "zarquon"}]
    )
    with pytest.raises(openai.BadRequestError) as blocked:
        harness.client("blocker").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "zarquon"}]
        )
    tenants = {r["tenant"] for r in harness.records_for(logger.headers["x-request-id"])}
    assert tenants == {"logger"}
    blocked_id = blocked.value.response.headers["x-request-id"]
    assert {r["tenant"] for r in harness.records_for(blocked_id)} == {"blocker"}


def test_a_key_with_extra_characters_or_another_case_is_rejected(harness: Harness) -> None:
    for key in (
        key_of("blocker") + "x",
        key_of("blocker").upper(),
        key_of("blocker")[:-1],
        "x" + key_of("blocker"),
    ):
        with (
            openai.OpenAI(base_url=f"{harness.proxy_url}/v1", api_key=key, max_retries=0) as client,
            pytest.raises(openai.AuthenticationError),
        ):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_client_cannot_steer_the_upstream(harness: Harness) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "base_url": "http://attacker.example/v1",
        "api_base": "http://attacker.example/v1",
    }
    headers = {"x-forwarded-host": "attacker.example", "host": "attacker.example", "api-key": "client-key"}
    response = harness.post("/v1/chat/completions", body, headers=headers)
    assert response.status_code == 200
    sent = harness.upstream.last
    assert sent.path == "/v1/chat/completions"  # it reached the tenant's configured upstream
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "api-key" not in sent.headers and not sent.headers["host"].startswith("attacker")


def test_upstream_key_never_appears_in_responses_audit_or_logs(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = harness.upstream
    texts = []
    # The upstream echoing our key in an error (as OpenAI's 401 partly does) must not leak it.
    for status in (400, 401, 403, 500):
        fake.status = status
        fake.error = {"error": {"message": f"bad key {UPSTREAM_KEY}", "type": "x", "code": "y"}}
        response = harness.post(
            "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert response.status_code >= 400
        texts.append(response.text + json.dumps(dict(response.headers)))
    fake.status, fake.raw_body = 502, f"<html>{UPSTREAM_KEY}</html>".encode()
    texts.append(harness.post("/v1/completions", {"model": "m", "prompt": "hi"}).text)
    assert all(UPSTREAM_KEY not in t for t in texts)
    assert UPSTREAM_KEY not in harness.audit_text()
    assert UPSTREAM_KEY not in caplog.text


def test_upstream_rejecting_our_credentials_is_a_gateway_error(harness: Harness) -> None:
    harness.upstream.status = 401
    response = harness.post(
        "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_authentication_failed"


def test_newlines_and_control_characters_cannot_forge_audit_lines(harness: Harness) -> None:
    forged = '{"request_id": "forged", "tenant": "blocker", "action": "allow"}'
    text = f"hello\n{forged}\r\n\u2028{forged}\u0085end"
    before = len(harness.records())
    raw = harness.client("logger").chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": text}]
    )
    lines = harness.audit_text().splitlines()  # after the writer thread has caught up
    records = [json.loads(line) for line in lines]  # every line is one whole JSON record
    assert len(records) == before + 2
    assert all(r["request_id"] != "forged" for r in records)
    (inbound,) = [r for r in harness.records_for(raw.headers["x-request-id"]) if r["direction"] == "inbound"]
    assert inbound["content"] == text


def test_forged_request_ids_are_replaced(harness: Harness) -> None:
    response = harness.post(
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": 'abc"} {"forged": 1'},  # legal header bytes, but not a safe id
    )
    assert response.headers["x-request-id"].startswith("req_")


def test_key_lookup_compares_every_key_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    policies = load_policies(policy_dir, environ=write_policies(policy_dir, "http://upstream.test"))
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    counts = []
    for key in (key_of("blocker"), key_of("failopen"), "sk-unknown"):
        calls.clear()
        policies.tenant_for_key(key)
        counts.append(len(calls))
    # The same number of constant-time comparisons whether the key matches the first, the last or none.
    assert counts[0] == counts[1] == counts[2] >= len(policies.policies)

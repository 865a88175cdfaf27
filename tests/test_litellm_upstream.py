"""``provider: litellm``: the OpenAI SDK -> crest-proxy -> litellm (mock answers or a fake OpenAI server).

No network: models either use litellm's ``mock_response`` testing aid or ``openai/<model>`` with an
``api_base`` on loopback (``tests/support/upstream.py``), so the exact request litellm sent can be inspected.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from crest_proxy.audit.sink import JsonlAuditSink
from crest_proxy.classifier import CrestClassifier
from crest_proxy.errors import ConfigError
from crest_proxy.policy.files import load_policies, load_policy
from crest_proxy.policy.model import LiteLLMUpstream
from crest_proxy.server.app import create_app
from crest_proxy.settings import ServerSettings
from crest_proxy.upstream.litellm_transport import Refused, plan_call
from tests.support.servers import serve
from tests.support.upstream import FakeUpstream

if importlib.util.find_spec("litellm") is None:  # the `litellm` extra
    pytest.skip("litellm is not installed", allow_module_level=True)
PROVIDER_KEY = "sk-provider-secret-0123456789abcdef"
PROXY_KEY = "sk-proxy-relay-key"


def relay_policy(fake_url: str) -> dict[str, Any]:
    """A tenant whose every model goes through litellm."""
    return {
        "tenant": "relay",
        "keys": ["env:RELAY_KEY"],
        "upstream": {
            "provider": "litellm",
            "models": {
                "mock": {"model": "openai/gpt-4o-mini", "mock_response": "Hello from the mock. Bye."},
                "mock-unsafe": {"model": "anthropic/claude-3-5-sonnet", "mock_response": "Here is a kaboom."},
                "mock-429": {"model": "openai/gpt-4o-mini", "mock_response": "litellm.RateLimitError"},
                "fake": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": f"{fake_url}/v1",
                    "api_key": "env:PROVIDER_KEY",
                },
                "fake-embed": {
                    "model": "openai/text-embedding-3-small",
                    "api_base": f"{fake_url}/v1",
                    "api_key": "env:PROVIDER_KEY",
                },  # fmt: skip
                "down": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": "http://127.0.0.1:9/v1",
                    "api_key": "env:X",
                },
            },
            "aliases": {"fast": "fake"},
            "timeout": {"connect": 2, "read": 10, "write": 5, "pool": 2},
        },
        "inbound": {"action": "block"},
        "outbound": {"action": "redact"},
        "rules": [{"name": "email", "pattern": r"[\w.+-]+@[\w-]+\.[\w.]+", "action": "redact"}],
        "redaction": {"placeholder": "[gone]"},
    }


@dataclass
class Relay:
    """Handles on a running crest-proxy whose tenant uses litellm, and the fake provider behind it."""

    url: str
    fake: FakeUpstream
    audit: JsonlAuditSink
    sdk: openai.OpenAI

    def client(self) -> openai.OpenAI:
        """The real OpenAI SDK client of the relay tenant (one per module, closed at the end)."""
        return self.sdk

    def records_for(self, request_id: str) -> list[dict[str, Any]]:
        """The audit records of one request."""
        self.audit.flush_sync()
        lines = self.audit.path.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["request_id"] == request_id]


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier) -> Iterator[Relay]:
    tmp = tmp_path_factory.mktemp("litellm-relay")
    fake = FakeUpstream()
    with ExitStack() as stack:
        fake_url = stack.enter_context(serve(fake.app()))
        (tmp / "policies").mkdir()
        (tmp / "policies" / "relay.yaml").write_text(yaml.safe_dump(relay_policy(fake_url)))
        environ = {"RELAY_KEY": PROXY_KEY, "PROVIDER_KEY": PROVIDER_KEY, "X": "sk-unused-but-set"}
        policies = load_policies(tmp / "policies", environ=environ)
        settings = ServerSettings(policies_dir=tmp / "policies", audit_log=tmp / "audit.jsonl")
        app = create_app(settings, policies=policies, classifier=classifier)
        url = stack.enter_context(serve(app))
        sdk = stack.enter_context(openai.OpenAI(base_url=f"{url}/v1", api_key=PROXY_KEY, max_retries=0))
        yield Relay(url, fake, app.state.gateway.audit, sdk)


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "relay" in request.fixturenames:
        fake = request.getfixturevalue("relay").fake
        fake.reply, fake.stream_pieces, fake.status = "Hello! How can I help you today?", None, 200
        fake.received.clear()


def ask(relay: Relay, text: str, model: str = "mock", **kwargs: Any) -> Any:
    return relay.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs
    )


# --- through the proxy --------------------------------------------------------------------------------


def test_safe_prompt_gets_litellms_answer_and_both_directions_are_audited(relay: Relay) -> None:
    raw = ask(relay, "What is the capital of France?")
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the mock. Bye."
    assert completion.object == "chat.completion" and completion.usage.total_tokens > 0
    records = relay.records_for(raw.headers["x-request-id"])
    assert [(r["direction"], r["action"], r["upstream_status"]) for r in records] == [
        ("inbound", "allow", 200),
        ("outbound", "allow", 200),
    ]
    assert all(r["tenant"] == "relay" and r["model"] == "mock" for r in records)


def test_provider_gets_the_mapped_model_and_the_key_from_the_environment(relay: Relay) -> None:
    completion = ask(relay, "hi", model="fast", temperature=0.2).parse()
    assert completion.choices[0].message.content == "Hello! How can I help you today?"
    sent = relay.fake.last
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "gpt-4o-mini" and sent.body["temperature"] == 0.2
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert PROXY_KEY not in json.dumps(sent.headers)


def test_unsafe_prompt_is_blocked_before_litellm_is_called(relay: Relay) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(relay, "How do I build a kaboom?", model="fake")
    assert caught.value.code == "content_policy_violation"
    assert relay.fake.received == []
    (record,) = relay.records_for(caught.value.response.headers["x-request-id"])
    assert (record["direction"], record["action"], record["upstream_status"]) == ("inbound", "block", None)


def test_redacted_prompt_is_what_the_provider_receives(relay: Relay) -> None:
    ask(relay, "Mail me at ana@example.com please.", model="fake")
    assert relay.fake.last.body["messages"][0]["content"] == "Mail me at [gone] please."


def test_unsafe_answer_from_a_mapped_provider_is_redacted(relay: Relay) -> None:
    raw = ask(relay, "tell me a story", model="mock-unsafe")
    assert raw.parse().choices[0].message.content == "[gone]"
    outbound = relay.records_for(raw.headers["x-request-id"])[-1]
    assert (outbound["direction"], outbound["action"]) == ("outbound", "redact")


def test_legacy_completions_and_embeddings(relay: Relay) -> None:
    text = relay.client().completions.create(model="mock", prompt="Say hi")
    assert text.choices[0].text == "Hello from the mock. Bye."
    vectors = relay.client().embeddings.create(model="fake-embed", input=["one", "two"])
    assert [len(d.embedding) for d in vectors.data] == [3, 3]
    assert relay.fake.last.body["input"] == ["one", "two"]


def test_models_lists_the_model_map(relay: Relay) -> None:
    names = {m.id for m in relay.client().models.list()}
    assert {"mock", "fake", "down"} <= names


def test_provider_errors_keep_openais_shape_and_status(relay: Relay) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        ask(relay, "hi", model="mock-429")
    assert limited.value.status_code == 429 and limited.value.code == "upstream_rate_limited"
    relay.fake.status = 401
    with pytest.raises(openai.InternalServerError) as denied:  # our credentials, not the client's: 502
        ask(relay, "hi", model="fake")
    assert denied.value.status_code == 502 and denied.value.code == "upstream_authentication_failed"
    assert (
        PROVIDER_KEY not in denied.value.response.text and PROVIDER_KEY[-6:] not in denied.value.response.text
    )


def test_unreachable_provider_is_a_502_and_audited(relay: Relay) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        ask(relay, "hi", model="down")
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "api_error"
    (inbound,) = relay.records_for(caught.value.response.headers["x-request-id"])
    assert inbound["action"] == "allow"


def test_routing_and_credential_parameters_from_clients_are_refused(relay: Relay) -> None:
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "api_base": "http://evil/v1"}
    response = httpx.post(
        f"{relay.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {PROXY_KEY}"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_parameter"
    assert response.json()["error"]["param"] == "api_base"
    assert relay.fake.received == []


def test_unknown_model_is_404(relay: Relay) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        ask(relay, "hi", model="gpt-5")
    assert caught.value.code == "model_not_found"


def stream_text(relay: Relay, text: str, model: str) -> tuple[str, list[Any]]:
    stream = relay.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True
    )
    chunks = list(stream)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def test_streaming_through_litellm_reaches_the_client_as_openai_chunks(relay: Relay) -> None:
    text, chunks = stream_text(relay, "hi", "mock")
    assert text == "Hello from the mock. Bye."
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop" or chunks[-2].choices[0].finish_reason == "stop"


def test_unsafe_sentence_mid_stream_is_redacted_before_the_client_sees_it(relay: Relay) -> None:
    relay.fake.stream_pieces = ["The first part is fine. ", "Then a zar", "quon appears. ", "Last part."]
    text, _ = stream_text(relay, "tell me", "fake")
    assert "zarquon" not in text
    assert text.startswith("The first part is fine. ") and text.endswith("Last part.")
    assert "[gone]" in text
    assert relay.fake.last.body["stream"] is True


def test_unsafe_streamed_prompt_never_reaches_litellm(relay: Relay) -> None:
    with pytest.raises(openai.BadRequestError):
        stream_text(relay, "a kaboom recipe", "fake")
    assert relay.fake.received == []


# --- the pure parts -----------------------------------------------------------------------------------


def upstream_of(models: dict[str, Any]) -> LiteLLMUpstream:
    return LiteLLMUpstream.model_validate({"provider": "litellm", "models": models})


def test_plan_call_maps_the_model_and_injects_resolved_secrets() -> None:
    upstream = upstream_of(
        {"c": {"model": "bedrock/anthropic.claude", "api_key": "env:K", "params": {"aws_region_name": "eu"}}}
    )
    upstream = upstream.model_copy(update={"aliases": {"fast": "c"}})
    body = {"model": "fast", "messages": [], "stream": True}
    call = plan_call(upstream, {"c": {"api_key": "secret"}}, "chat.completions", body)
    assert (call.function, call.stream) == ("acompletion", True)
    assert call.kwargs["model"] == "bedrock/anthropic.claude" and call.kwargs["api_key"] == "secret"
    assert call.kwargs["aws_region_name"] == "eu" and call.kwargs["max_retries"] == 0
    assert call.kwargs["timeout"].read == 60.0


@pytest.mark.parametrize(
    ("endpoint", "body", "status", "code"),
    [
        ("chat.completions", {"model": "nope", "messages": []}, 404, "model_not_found"),
        ("chat.completions", {"model": "c", "messages": [], "api_key": "x"}, 400, "unsupported_parameter"),
        (
            "chat.completions",
            {"model": "c", "messages": [], "extra_headers": {}},
            400,
            "unsupported_parameter",
        ),
        ("embeddings", {"model": "c", "input": "x", "stream": True}, 400, "unsupported_parameter"),
        ("completions", ["not", "an", "object"], 400, "invalid_request"),
    ],
)
def test_plan_call_refuses_what_it_cannot_serve(endpoint: str, body: Any, status: int, code: str) -> None:
    with pytest.raises(Refused) as refused:
        plan_call(upstream_of({"c": {"model": "openai/x"}}), {}, endpoint, body)
    assert refused.value.response.status_code == status
    assert refused.value.response.json()["error"]["code"] == code


def test_missing_model_credential_names_file_and_dotted_key(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    policy = {"tenant": "t", "keys": ["env:K"], "upstream": {"provider": "litellm", "models": {
        "claude": {"model": "anthropic/claude", "api_key": "env:ANTHROPIC_KEY"}}}}  # fmt: skip
    path.write_text(yaml.safe_dump(policy))
    with pytest.raises(ConfigError) as caught:
        load_policy(path, environ={"K": "k"})
    assert str(caught.value) == (
        f"{path}: upstream.models.claude.api_key: environment variable ANTHROPIC_KEY is not set; "
        "set ANTHROPIC_KEY or remove upstream.models.claude.api_key"
    )


def test_policy_errors_inside_a_litellm_upstream_keep_their_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "tenant: t\nkeys: [env:K]\nupstream:\n  provider: litellm\n  models:\n"
        "    c: {model: openai/x, api_key: sk-literal, api_bse: x}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_policy(path, environ={"K": "k"})
    problems = caught.value.problems
    assert any(p.startswith(f"{path}: upstream.models.c.api_key: a literal secret") for p in problems)
    assert any(
        p.startswith(f"{path}: upstream.models.c.api_bse: unknown key; allowed keys: model,")
        for p in problems
    )
    assert "sk-literal" not in str(caught.value)

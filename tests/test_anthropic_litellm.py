"""``POST /v1/messages`` via a ``provider: litellm`` upstream: the Anthropic SDK -> crest-proxy -> litellm.

litellm translates the Messages API for any provider; here an ``openai/…`` model on a fake OpenAI server on
loopback (litellm sends it Responses API requests) and a ``mock_response`` model. Screening is the proxy's.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import anthropic
import pytest
import yaml

from crest_proxy.classifier import CrestClassifier
from crest_proxy.policy.files import load_policies
from crest_proxy.server.app import create_app
from crest_proxy.settings import ServerSettings
from tests.support.servers import serve
from tests.support.upstream import FakeUpstream

if importlib.util.find_spec("litellm") is None:  # the `litellm` extra
    pytest.skip("litellm is not installed", allow_module_level=True)
PROXY_KEY = "sk-proxy-relay-key"
HELLO = [{"role": "user", "content": "Hello there"}]


def relay_policy(fake_url: str) -> dict[str, Any]:
    model = {"model": "openai/gpt-4o-mini", "api_base": f"{fake_url}/v1", "api_key": "env:PROVIDER_KEY"}
    return {
        "tenant": "relay",
        "keys": ["env:RELAY_KEY"],
        "upstream": {
            "provider": "litellm",
            "models": {
                "gpt": model,
                "mock": {"model": "openai/gpt-4o-mini", "mock_response": "Mocked. Bye."},
            },
        },
        "outbound": {"action": "redact"},
        "rules": [{"name": "email", "pattern": r"[\w.+-]+@[\w-]+\.[\w.]+", "action": "redact"}],
        "redaction": {"placeholder": "[gone]"},
    }


@pytest.fixture(scope="module")
def relay(
    tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier
) -> Iterator[tuple[str, FakeUpstream]]:
    tmp = tmp_path_factory.mktemp("anthropic-litellm")
    fake = FakeUpstream()
    with ExitStack() as stack:
        fake_url = stack.enter_context(serve(fake.app()))
        (tmp / "policies").mkdir()
        (tmp / "policies" / "relay.yaml").write_text(yaml.safe_dump(relay_policy(fake_url)))
        environ = {"RELAY_KEY": PROXY_KEY, "PROVIDER_KEY": "sk-provider-0123456789"}
        policies = load_policies(tmp / "policies", environ=environ)
        settings = ServerSettings(policies_dir=tmp / "policies", audit_log=tmp / "audit.jsonl")
        url = stack.enter_context(serve(create_app(settings, policies=policies, classifier=classifier)))
        yield url, fake


@pytest.fixture
def client(relay: tuple[str, FakeUpstream]) -> Iterator[anthropic.Anthropic]:
    relay[1].received.clear()
    relay[1].stream_pieces = None
    with anthropic.Anthropic(base_url=relay[0], api_key=PROXY_KEY, max_retries=0) as sdk:
        yield sdk


def test_mapped_model_answers_in_anthropics_shape(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="mock", max_tokens=16, messages=HELLO)
    assert (message.type, message.content[0].text) == ("message", "Mocked. Bye.")


def test_provider_gets_the_redacted_prompt_and_the_answer_comes_back(
    client: anthropic.Anthropic, relay: tuple[str, FakeUpstream]
) -> None:
    messages = [{"role": "user", "content": "Mail ana@example.com please"}]
    message = client.messages.create(model="gpt", max_tokens=16, messages=messages)
    assert message.content[0].text == "Hello! How can I help you today?"
    assert "ana@" not in str(relay[1].last.body) and "[gone]" in str(relay[1].last.body)


def test_unsafe_prompt_never_reaches_litellm(
    client: anthropic.Anthropic, relay: tuple[str, FakeUpstream]
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="gpt", max_tokens=16, messages=[{"role": "user", "content": "a kaboom"}])
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert relay[1].received == []


def test_streamed_answer_is_screened_through_litellm(
    client: anthropic.Anthropic, relay: tuple[str, FakeUpstream]
) -> None:
    relay[1].stream_pieces = ["Fine start. ", "Then a zar", "quon appears. ", "The end."]
    with client.messages.stream(model="gpt", max_tokens=16, messages=HELLO) as events:
        final = events.get_final_message()
    text = final.content[0].text
    assert text.startswith("Fine start. [gone]") and text.endswith("The end.") and "zar" not in text
    assert final.stop_reason == "end_turn"


def test_unknown_model_and_count_tokens_are_anthropic_404s(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="nope", max_tokens=16, messages=HELLO)
    assert caught.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="gpt", messages=HELLO)

"""The screening budget (issue 14): texts over max_screen_tokens are refused before any model call.

Refused with 413 (a request) or 502 (an answer) WHATEVER on_error says, in OpenAI's error shape, and
audited; under the budget nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from crest_proxy.classifier import CrestClassifier
from crest_proxy.policy.model import Policy
from crest_proxy.screening.guard import Guard
from crest_proxy.types import Action, Direction
from tests.support.classifiers import safe_classifier
from tests.support.harness import Harness, running_proxy

LIMIT = 200
LONG = "the quick brown fox jumps over the lazy dog " * 40  # ~360 tokens: over LIMIT
SHORT = "the quick brown fox jumps over the lazy dog " * 10  # ~90 tokens: under


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier) -> Iterator[Harness]:
    """The proxy with a small server-wide screening budget."""
    with running_proxy(tmp_path_factory.mktemp("budget"), classifier, max_screen_tokens=LIMIT) as h:
        yield h


def chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize("tenant", ["blocker", "failopen"])
def test_an_oversized_prompt_is_refused_413_whatever_on_error_says(
    harness: Harness, classifier: CrestClassifier, tenant: str
) -> None:
    calls_before = classifier.stats.model_calls
    sent_before = len(harness.upstream.received)
    response = harness.post("/v1/chat/completions", chat(LONG), tenant=tenant)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "screening_budget_exceeded"
    assert f"budget of {LIMIT} tokens" in error["message"] and "max_screen_tokens" in error["message"]
    assert classifier.stats.model_calls == calls_before  # refused before any model call
    assert len(harness.upstream.received) == sent_before  # and never forwarded
    (record,) = harness.records_for(response.headers["x-request-id"])
    assert record["action"] == "block" and "screening_budget_exceeded" in record["error"]


def test_a_prompt_under_the_budget_is_screened_as_usual(harness: Harness) -> None:
    response = harness.post("/v1/chat/completions", chat(SHORT), tenant="failopen")
    assert response.status_code == 200
    assert harness.post("/v1/chat/completions", chat(SHORT + " kaboom")).status_code == 400


def test_an_oversized_answer_is_not_forwarded_unscreened(harness: Harness) -> None:
    harness.upstream.reply = LONG + " secret-marker"
    try:
        response = harness.post("/v1/chat/completions", chat("hi"), tenant="failopen")
    finally:
        harness.upstream.reply = "Hello! How can I help you today?"
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "screening_budget_exceeded"
    assert "secret-marker" not in response.text


def policy(**overrides: Any) -> Policy:
    data = {"tenant": "t1", "keys": ["sha256:" + "ab" * 32], "upstream": {"base_url": "https://x.example/v1"}}
    return Policy.model_validate({**data, **overrides})


async def test_the_policy_budget_overrides_the_server_default_and_counts_characters_without_a_tokenizer() -> (
    None
):
    guard = Guard(safe_classifier(), max_screen_tokens=1000)  # a fake: no tokenizer, a character = a token
    assert (await guard.screen(policy(), Direction.INBOUND, ["x" * 1000])).action is Action.ALLOW
    small = await guard.screen(policy(max_screen_tokens=10), Direction.INBOUND, ["x" * 11])
    assert small.over_budget and small.action is Action.BLOCK and not small.failed_closed
    big = await guard.screen(policy(max_screen_tokens=5000), Direction.OUTBOUND, ["x" * 4000])
    assert big.action is Action.ALLOW


async def test_a_huge_text_is_refused_without_tokenizing_it(classifier: CrestClassifier) -> None:
    guard = Guard(classifier, max_screen_tokens=LIMIT)
    screening = await guard.screen(policy(), Direction.INBOUND, ["a" * (LIMIT * 64 + 1)])
    assert screening.over_budget and screening.error is not None and "about" in screening.error


@pytest.mark.parametrize("value", [0, -5, True, "lots"])
def test_max_screen_tokens_must_be_a_positive_whole_number(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        policy(max_screen_tokens=value)
    assert info.value.errors()[0]["loc"] == ("max_screen_tokens",)


def test_the_shipped_policy_documents_the_budget() -> None:
    text = (Path(__file__).parent.parent / "policies" / "default.yaml").read_text()
    assert "max_screen_tokens" in text and "screening_budget_exceeded" in text

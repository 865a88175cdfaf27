"""``CrestGuardrail``'s hooks, called the way LiteLLM's proxy calls them, with real litellm objects.

The end-to-end test through a real ``litellm`` proxy process is ``test_litellm_proxy.py``; this module
pins each decision and how LiteLLM is told about it, quickly and in-process.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crest_proxy.audit.sink import MemoryAuditSink
from crest_proxy.classifier import CrestClassifier
from crest_proxy.errors import ClassifierError, ConfigError
from crest_proxy.screening.guard import Guard
from tests.support.classifiers import FakeClassifier

# litellm downloads its model cost map when imported unless told otherwise; tests stay offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")  # the `litellm` extra
from fastapi import HTTPException  # noqa: E402
from litellm.exceptions import ModifyResponseException  # noqa: E402
from litellm.integrations.custom_guardrail import is_guardrail_intervention  # noqa: E402

from crest_proxy.integrations.litellm.guardrail import CrestGuardrail, GuardrailRuntime  # noqa: E402

EMAIL = {"name": "email", "pattern": r"[\w.+-]+@[\w-]+\.[\w.]+", "action": "redact"}


def policy_doc(**overrides: Any) -> dict[str, Any]:
    """A policy file as an operator writes it (keys and upstream are the proxy's and unused here)."""
    return {
        "tenant": "litellm-acme",
        "keys": ["env:ACME_PROXY_KEY_NOT_SET_HERE"],
        "upstream": {"base_url": "https://api.openai.com/v1", "api_key": "env:NOT_SET_EITHER"},
        "inbound": {"action": "block"},
        "outbound": {"action": "block"},
        "rules": [EMAIL],
        "block": {"message": "Blocked by policy."},
        "redaction": {"placeholder": "[gone]"},
        **overrides,
    }


class Plugin:
    """Builds guardrails as LiteLLM does (litellm_params as keyword arguments), sharing one classifier."""

    def __init__(self, tmp: Path, classifier: Any) -> None:
        self.tmp, self.classifier, self.sink = tmp, classifier, MemoryAuditSink()

    def __call__(self, classifier: Any = None, **policy: Any) -> CrestGuardrail:
        path = self.tmp / f"policy-{len(list(self.tmp.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(policy_doc(**policy)))
        runtime = GuardrailRuntime(Guard(classifier or self.classifier), self.sink)
        return CrestGuardrail(
            policy=str(path), guardrail_name="crest", event_hook=["pre_call", "post_call"], default_on=True,
            runtime=runtime,
        )  # fmt: skip

    def records(self) -> list[tuple[str, str, str]]:
        return [(r.request_id, r.direction, r.action) for r in self.sink.records]


@pytest.fixture
def plugin(tmp_path: Path, classifier: CrestClassifier) -> Plugin:
    return Plugin(tmp_path, classifier)


def chat_request(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        "litellm_call_id": "call-1",
        **extra,
    }


def answer(text: str) -> Any:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    return litellm.ModelResponse(choices=[choice], model="gpt-4o-mini")


async def chunks(pieces: list[str], closed: list[bool]) -> AsyncIterator[Any]:
    try:
        for piece in pieces:
            yield litellm.ModelResponseStream(choices=[{"index": 0, "delta": {"content": piece}}], model="m")
        yield litellm.ModelResponseStream(
            choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}], model="m"
        )
    finally:
        closed.append(True)


async def relay(guardrail: CrestGuardrail, pieces: list[str], closed: list[bool]) -> list[Any]:
    stream = guardrail.async_post_call_streaming_iterator_hook(
        None, chunks(pieces, closed), chat_request("hi")
    )
    return [chunk async for chunk in stream]


def text_of(streamed: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


# --- pre_call ----------------------------------------------------------------------------------------


async def test_safe_request_passes_untouched_and_is_audited_under_litellms_call_id(plugin: Plugin) -> None:
    data = chat_request("What is the capital of France?")
    assert await plugin().async_pre_call_hook(None, None, data, "completion") is data
    assert data["messages"][0]["content"] == "What is the capital of France?"
    assert plugin.records() == [("call-1", "inbound", "allow")]


async def test_unsafe_request_is_a_400_that_litellm_counts_as_an_intervention(plugin: Plugin) -> None:
    with pytest.raises(HTTPException) as caught:
        await plugin().async_pre_call_hook(None, None, chat_request("build a kaboom"), "acompletion")
    assert caught.value.status_code == 400 and is_guardrail_intervention(caught.value)
    detail = caught.value.detail
    assert detail["error"] == "Blocked by policy." and detail["code"] == "content_policy_violation"
    assert detail["crest"]["score"] > 0.99 and detail["crest"]["request_id"] == "call-1"
    assert "kaboom" not in str(detail)
    assert plugin.records() == [("call-1", "inbound", "block")]


IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


async def test_token_ids_and_media_follow_the_policy_and_are_audited(plugin: Plugin) -> None:
    tokens = {"model": "m", "prompt": [1, 2, 3], "litellm_call_id": "call-1"}
    with pytest.raises(HTTPException) as caught:  # inbound.token_inputs: block (the default)
        await plugin().async_pre_call_hook(None, None, tokens, "atext_completion")
    assert caught.value.status_code == 400 and "inbound.token_inputs" in str(caught.value.detail)
    picture = chat_request("What is this?")
    picture["messages"][0]["content"] = [{"type": "text", "text": "What is this?"}, IMAGE]
    guardrail = plugin()
    assert await guardrail.async_pre_call_hook(None, None, picture, "acompletion") is picture  # allow
    refusing = plugin(inbound={"media_inputs": "block"})
    with pytest.raises(HTTPException) as caught:
        await refusing.async_pre_call_hook(None, None, picture, "acompletion")
    assert "messages[0].content[1].image_url" in str(caught.value.detail)
    assert is_guardrail_intervention(caught.value)
    notes = [
        (r.action, r.extra.get("token_inputs"), r.extra.get("media_inputs")) for r in plugin.sink.records
    ]
    image = ["messages[0].content[1].image_url"]
    assert notes == [("block", ["prompt"], None), ("allow", None, image), ("block", None, image)]


async def test_the_400_has_serves_top_level_code_for_litellms_proxy(plugin: Plugin) -> None:
    from litellm.proxy._types import ProxyException

    with pytest.raises(ProxyException) as caught:
        await plugin().async_pre_call_hook(None, None, chat_request("build a kaboom"), "acompletion")
    body = caught.value.to_dict()
    assert (body["type"], body["code"], body["message"]) == (
        "invalid_request_error", "content_policy_violation", "Blocked by policy.",
    )  # fmt: skip
    assert int(caught.value.code) == 400  # the status LiteLLM's handler answers with


async def test_refusal_style_answers_with_the_refusal_instead(plugin: Plugin) -> None:
    guardrail = plugin(block={"style": "refusal", "message": "I can't help with that."})
    with pytest.raises(ModifyResponseException) as caught:
        await guardrail.async_pre_call_hook(None, None, chat_request("kaboom"), "completion")
    assert caught.value.message == "I can't help with that." and is_guardrail_intervention(caught.value)


async def test_redaction_rewrites_only_the_messages_litellm_sends_on(plugin: Plugin) -> None:
    logging_obj = object()  # LiteLLM's request dict holds objects that must not be copied
    text = "Mail ana@example.com now. The zarquon part. Thanks!"
    data = chat_request(text, litellm_logging_obj=logging_obj)
    data["messages"].insert(0, {"role": "system", "content": "Be brief."})
    guardrail = plugin(inbound={"action": "redact"})
    result = await guardrail.async_pre_call_hook(None, None, data, "completion")
    assert result is data and data["litellm_logging_obj"] is logging_obj
    assert [m["content"] for m in data["messages"]] == ["Be brief.", "Mail [gone] now. [gone] Thanks!"]
    assert plugin.records() == [("call-1", "inbound", "redact")]


async def test_embeddings_and_text_completions_are_screened_too(plugin: Plugin) -> None:
    guardrail = plugin()
    with pytest.raises(HTTPException):
        await guardrail.async_pre_call_hook(
            None, None, {"model": "e", "input": ["ok", "kaboom"]}, "aembedding"
        )
    data = {"model": "t", "prompt": "write to ana@example.com"}
    await plugin(inbound={"action": "redact"}).async_pre_call_hook(None, None, data, "atext_completion")
    assert data["prompt"] == "write to [gone]"


async def test_calls_without_text_pass_without_a_decision(plugin: Plugin) -> None:
    data = {"model": "dall-e", "prompt": "a kaboom"}
    assert await plugin().async_pre_call_hook(None, None, data, "aimage_generation") is data
    assert plugin.records() == []


async def test_classifier_failure_fails_closed_with_503(plugin: Plugin) -> None:
    with pytest.raises(HTTPException) as caught:
        await plugin(classifier=crashed()).async_pre_call_hook(
            None, None, chat_request("hello"), "completion"
        )
    assert caught.value.status_code == 503 and not is_guardrail_intervention(caught.value)
    assert caught.value.detail["code"] == "classifier_unavailable"
    assert plugin.sink.records[0].error.startswith("ClassifierError")


def crashed() -> FakeClassifier:
    return FakeClassifier(error=ClassifierError("model crashed"))


# --- post_call ---------------------------------------------------------------------------------------


async def test_unsafe_answer_becomes_content_filter_like_the_proxys(plugin: Plugin) -> None:
    response = answer("Sure. Here is how to make a kaboom.")
    response._hidden_params = {"model_id": "deployment-1"}
    out = await plugin().async_post_call_success_hook(chat_request("hi"), None, response)
    assert isinstance(out, litellm.ModelResponse) and out._hidden_params == {"model_id": "deployment-1"}
    assert out.choices[0].message.content == "Blocked by policy."
    assert out.choices[0].finish_reason == "content_filter"
    assert plugin.records() == [("call-1", "outbound", "block")]


async def test_answer_redaction_and_safe_answers(plugin: Plugin) -> None:
    guardrail = plugin(outbound={"action": "redact"})
    redacted = await guardrail.async_post_call_success_hook(
        chat_request("hi"), None, answer("First is fine. Second has zarquon. Mail ana@example.com today.")
    )
    assert redacted.choices[0].message.content == "First is fine. [gone] Mail [gone] today."
    safe = answer("All good.")
    assert await guardrail.async_post_call_success_hook(chat_request("hi"), None, safe) is safe


def _token(token: str, *others: str) -> dict[str, Any]:
    top = [{"token": t, "logprob": -1.0, "bytes": None} for t in (token, *others)]
    return {"token": token, "logprob": -0.1, "bytes": None, "top_logprobs": top}


# "All good." chosen; the second-best token at the second position is the trigger word.
_ALTERNATIVES = {"content": [_token("All"), _token(" good", " kaboom"), _token(".")], "refusal": None}


async def test_token_alternatives_are_screened_like_the_answer(plugin: Plugin) -> None:
    def with_logprobs() -> Any:
        response = answer("All good.")
        response.choices[0].logprobs = _ALTERNATIVES
        return response

    blocked = await plugin().async_post_call_success_hook(chat_request("hi"), None, with_logprobs())
    assert blocked.choices[0].finish_reason == "content_filter"
    redacted = await plugin(outbound={"action": "redact"}).async_post_call_success_hook(
        chat_request("hi"), None, with_logprobs()
    )
    assert redacted.choices[0].message.content == "All good."
    assert "kaboom" not in redacted.model_dump_json()

    async def streamed() -> AsyncIterator[Any]:
        choice = {"index": 0, "delta": {"content": "All good."}, "logprobs": _ALTERNATIVES}
        yield litellm.ModelResponseStream(choices=[choice], model="m")
        yield litellm.ModelResponseStream(
            choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}], model="m"
        )

    request = chat_request("hi", logprobs=True, top_logprobs=2)
    stream = plugin(outbound={"action": "redact"}).async_post_call_streaming_iterator_hook(
        None, streamed(), request
    )
    out = [chunk async for chunk in stream]
    assert text_of(out) == "All good." and not any("kaboom" in c.model_dump_json() for c in out)
    stream = plugin().async_post_call_streaming_iterator_hook(None, streamed(), request)
    out = [chunk async for chunk in stream]
    assert out[-1].choices[0].finish_reason == "content_filter"
    assert not any("kaboom" in c.model_dump_json() for c in out)


async def test_stream_is_held_back_and_redacted_sentence_by_sentence(plugin: Plugin) -> None:
    closed: list[bool] = []
    streamed = await relay(
        plugin(outbound={"action": "redact"}), ["Fine. ", "A zar", "quon here. ", "Done."], closed
    )
    assert text_of(streamed) == "Fine. [gone] Done."
    assert all(isinstance(c, litellm.ModelResponseStream) for c in streamed)
    assert streamed[-1].choices[0].finish_reason == "stop" and closed == [True]
    (record,) = plugin.sink.records
    assert (record.direction, record.action, record.extra["stream"], record.extra["outcome"]) == (
        "outbound", "redact", True, "completed",
    )  # fmt: skip


async def test_blocked_stream_ends_with_content_filter_and_stops_reading(plugin: Plugin) -> None:
    closed: list[bool] = []
    pieces = ["Fine. ", "Then kaboom. ", "never read", "never read either"]
    streamed = await relay(plugin(), pieces, closed)
    assert text_of(streamed) == "Fine. "
    assert streamed[-1].choices[0].finish_reason == "content_filter"
    assert closed == [True]
    assert plugin.sink.records[0].extra["outcome"] == "blocked"


async def test_stream_fails_closed_when_the_classifier_breaks(plugin: Plugin) -> None:
    with pytest.raises(HTTPException) as caught:
        await relay(
            plugin(classifier=crashed()),
            ["Hello there. ", "More."],
            [],
        )
    assert caught.value.status_code == 503
    assert plugin.sink.records[0].extra["outcome"] == "classifier_unavailable"


async def test_streamed_legacy_completion_never_sends_an_empty_choices_chunk(plugin: Plugin) -> None:
    async def pieces() -> AsyncIterator[Any]:
        for text in ["Fine", " so far", ". Then", " more", "."]:
            yield text_chunk(text)
        yield text_chunk("", finish="stop")

    stream = plugin(outbound={"action": "redact"}).async_post_call_streaming_iterator_hook(
        None, pieces(), {"model": "m", "prompt": "hi", "litellm_call_id": "call-1"}
    )
    streamed = [c async for c in stream]
    assert all(c.choices for c in streamed), [c.model_dump() for c in streamed]
    assert "".join(c.choices[0].text for c in streamed) == "Fine so far. Then more."


def text_chunk(text: str, finish: str | None = None) -> Any:
    from litellm.types.utils import TextChoices, TextCompletionResponse

    choice = TextChoices(index=0, text=text, finish_reason=finish, logprobs=None)
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    return TextCompletionResponse(
        id="cmpl-1", object="text_completion", choices=[choice], model="m", usage=usage
    )


# --- configuration -----------------------------------------------------------------------------------


def test_policy_parameter_is_required_and_validated_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="litellm_params.policy is missing"):
        CrestGuardrail(guardrail_name="crest", event_hook="pre_call")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(policy_doc(inbound={"threshold": 2})))
    with pytest.raises(ConfigError) as caught:
        CrestGuardrail(policy=str(bad), guardrail_name="crest", event_hook="pre_call")
    assert str(caught.value).startswith(f"{bad}: inbound.threshold: 2 is out of range")


def test_policy_env_references_need_not_be_set_for_the_plugin(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy_doc()))
    guardrail = CrestGuardrail(policy=str(path), guardrail_name="crest", event_hook=["pre_call", "post_call"])
    assert guardrail.policy.tenant == "litellm-acme" and guardrail.settings.audit_log is None


def test_unsupported_modes_are_refused_by_litellm(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy_doc()))
    with pytest.raises(ValueError):
        CrestGuardrail(policy=str(path), guardrail_name="crest", event_hook="during_call")

"""End to end: the real OpenAI SDK -> crest-proxy (uvicorn, loopback) -> a fake upstream; generated model."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.openapi_schemas import assert_valid
from tests.support.harness import UPSTREAM_KEY, Harness, key_of


@pytest.fixture(autouse=True)
def _reset_upstream(harness: Harness) -> None:
    fake = harness.upstream
    fake.reply, fake.tool_arguments, fake.status, fake.error, fake.raw_body = (
        "Hello! How can I help you today?",
        None,
        200,
        None,
        None,
    )
    fake.received.clear()


def chat(harness: Harness, text: str, tenant: str = "blocker", **kwargs: object) -> object:
    return harness.client(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **kwargs
    )


# --- allow -----------------------------------------------------------------------------------------------


def test_safe_chat_passes_through_with_the_tenants_upstream_key(harness: Harness) -> None:
    raw = chat(harness, "What is the capital of France?")
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello! How can I help you today?"
    sent = harness.upstream.last
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert key_of("blocker") not in str(sent.headers)
    assert sent.body["messages"][0]["content"] == "What is the capital of France?"
    request_id = raw.headers["x-request-id"]
    records = harness.records_for(request_id)
    assert [(r["direction"], r["action"]) for r in records] == [("inbound", "allow"), ("outbound", "allow")]
    assert all(r["upstream_status"] == 200 and r["tenant"] == "blocker" for r in records)


def test_unknown_request_fields_are_forwarded_untouched(harness: Harness) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "x_vendor_field": {"nested": [1, 2, 3]},
    }
    response = harness.post("/v1/chat/completions", body)
    assert response.status_code == 200
    assert harness.upstream.last.body == body


def test_hop_by_hop_headers_and_cookies_are_not_forwarded(harness: Harness) -> None:
    response = harness.post(
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={
            "cookie": "session=abc",
            "connection": "keep-alive",
            "x-custom": "kept",
            "host": "evil.example",
        },
    )
    assert response.status_code == 200
    sent = harness.upstream.last.headers
    assert "cookie" not in sent
    assert sent["x-custom"] == "kept"
    assert sent["host"].startswith("127.0.0.1")


async def test_async_sdk_safe_and_blocked(harness: Harness) -> None:
    client = harness.async_client()
    ok = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert ok.choices[0].message.content.startswith("Hello")
    with pytest.raises(openai.BadRequestError) as blocked:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me about kaboom"}]
        )
    assert blocked.value.code == "content_policy_violation"
    await client.close()


async def test_concurrent_requests_each_get_their_own_decision(harness: Harness) -> None:
    client = harness.async_client()

    async def one(i: int) -> str:
        text = f"message {i} zarquon" if i % 3 == 0 else f"message {i}"
        try:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
            )
            return "ok"
        except openai.BadRequestError:
            return "blocked"

    results = await asyncio.gather(*(one(i) for i in range(24)))
    assert results == ["blocked" if i % 3 == 0 else "ok" for i in range(24)]
    await client.close()


# --- block -----------------------------------------------------------------------------------------------


def test_unsafe_prompt_is_blocked_with_400_and_never_reaches_upstream(harness: Harness) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        harness.client().chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "How do I build a kaboom device?"}],
            extra_headers={"x-request-id": "req-user-123"},
        )
    err = caught.value
    assert err.status_code == 400
    assert err.code == "content_policy_violation"
    assert err.body["type"] == "invalid_request_error" and err.body["param"] is None
    assert err.body["message"] == "Blocked by policy."
    # The proxy mints its own id (issue 14); the client's is kept in the record as client_request_id.
    request_id = err.response.headers["x-request-id"]
    assert request_id.startswith("req_") and request_id != "req-user-123"
    assert harness.upstream.received == []
    (record,) = harness.records_for(request_id)
    assert record["action"] == "block" and record["direction"] == "inbound"
    assert record["client_request_id"] == "req-user-123"
    assert record["score"] > 0.99 and record["threshold"] == 0.5
    assert record["upstream_status"] is None
    assert len(record["text_sha256"]) == 64 and record["content"] is None


def test_error_body_matches_openai_error_schema(harness: Harness) -> None:
    response = harness.post(
        "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "kaboom"}]}
    )
    assert response.status_code == 400
    assert_valid(response.json(), "ErrorResponse")


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "You are kaboom."}, {"role": "user", "content": "hi"}],
        [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"q": "zarquon"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
        [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "c1", "content": "result: kaboom"},
        ],
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "text", "text": "what is in this kaboom picture"},
                ],
            }
        ],
    ],
    ids=["system", "tool-call-arguments", "tool-result", "multimodal-text-part"],
)
def test_every_part_the_model_reads_is_screened(harness: Harness, messages: list[dict]) -> None:
    with pytest.raises(openai.BadRequestError):
        harness.client().chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert harness.upstream.received == []


def test_images_pass_untouched_when_text_is_safe(harness: Harness) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content = [image, {"type": "text", "text": "describe this"}]
    harness.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
    )
    assert harness.upstream.last.body["messages"][0]["content"] == content


def test_secret_rule_blocks_inbound(harness: Harness) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(harness, "my key is sk-abcdefghijklmnopqrstuvwxyz123")
    request_id = caught.value.response.headers["x-request-id"]
    (record,) = harness.records_for(request_id)
    assert record["rules"] == ["openai_key"] and record["action"] == "block"


def test_unsafe_completion_is_replaced_with_content_filter(harness: Harness) -> None:
    harness.upstream.reply = "Sure. Here is how to make a kaboom at home."
    raw = chat(harness, "tell me a story")
    completion = raw.parse()
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content == "Blocked by policy."
    assert "kaboom" not in raw.http_response.text
    records = harness.records_for(raw.headers["x-request-id"])
    assert [(r["direction"], r["action"]) for r in records] == [("inbound", "allow"), ("outbound", "block")]
    assert_valid(raw.http_response.json(), "CreateChatCompletionResponse")


def test_unsafe_tool_call_arguments_in_completion_are_blocked(harness: Harness) -> None:
    harness.upstream.tool_arguments = '{"query": "zarquon recipe"}'
    completion = chat(harness, "look something up").parse()
    assert completion.choices[0].finish_reason == "content_filter"
    assert not completion.choices[0].message.tool_calls


def test_refusal_style_answers_200_with_the_refusal(harness: Harness) -> None:
    completion = chat(harness, "kaboom please", tenant="refuser").parse()
    assert completion.choices[0].message.content == "I can't help with that."
    assert completion.choices[0].finish_reason == "content_filter"
    assert harness.upstream.received == []


# --- redact and log ----------------------------------------------------------------------------------------


def test_redact_replaces_only_the_unsafe_sentence_and_rule_matches(harness: Harness) -> None:
    text = "Hi there, I'm Ana (ana@example.com). The kaboom goes here. Thanks — ¿qué tal? 日本語。"
    chat(harness, text, tenant="redactor")
    forwarded = harness.upstream.last.body["messages"][0]["content"]
    assert forwarded == "Hi there, I'm Ana ([gone]). [gone] Thanks — ¿qué tal? 日本語。"


def test_redacted_outbound_text_reaches_client_and_audit_keeps_full_content(harness: Harness) -> None:
    harness.upstream.reply = "First sentence is fine. Second mentions zarquon. Third is fine."
    raw = chat(harness, "hello", tenant="redactor")
    assert raw.parse().choices[0].message.content == "First sentence is fine. [gone] Third is fine."
    outbound = [r for r in harness.records_for(raw.headers["x-request-id"]) if r["direction"] == "outbound"]
    assert outbound[0]["action"] == "redact"
    assert outbound[0]["content"] == "First sentence is fine. Second mentions zarquon. Third is fine."


def test_log_action_leaves_traffic_unchanged_and_flags_the_record(harness: Harness) -> None:
    harness.upstream.reply = "a kaboom answer"
    raw = chat(harness, "a zarquon question", tenant="logger")
    assert raw.parse().choices[0].message.content == "a kaboom answer"
    assert harness.upstream.last.body["messages"][0]["content"] == "a zarquon question"
    records = harness.records_for(raw.headers["x-request-id"])
    assert [r["action"] for r in records] == ["log", "log"]
    assert records[0]["content"] == "a zarquon question"


# --- other endpoints ----------------------------------------------------------------------------------------


def test_legacy_completions_prompt_string_and_list(harness: Harness) -> None:
    client = harness.client()
    ok = client.completions.create(model="gpt-4o-mini", prompt=["one", "two"])
    assert ok.choices[0].text.startswith("Hello")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="gpt-4o-mini", prompt=["fine", "but kaboom"])
    harness.upstream.reply = "zarquon"
    blocked = client.completions.create(model="gpt-4o-mini", prompt="hi")
    assert blocked.choices[0].finish_reason == "content_filter"


def test_responses_api_input_and_instructions(harness: Harness) -> None:
    client = harness.client()
    ok = client.responses.create(model="gpt-4o-mini", input="hello", instructions="be brief")
    assert ok.output_text.startswith("Hello")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o-mini", input="hello", instructions="say kaboom")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(
            model="gpt-4o-mini",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "zarquon"}]}],
        )
    harness.upstream.reply = "kaboom!"
    blocked = client.responses.create(model="gpt-4o-mini", input="hi")
    assert blocked.status == "incomplete" and "kaboom" not in blocked.output_text


def test_embeddings_screen_every_input(harness: Harness) -> None:
    client = harness.client()
    ok = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(ok.data) == 2
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-small", input=["a", "kaboom"])


def test_models_lists_upstream_models_filtered_and_aliased(harness: Harness) -> None:
    assert {m.id for m in harness.client().models.list()} == {
        "gpt-4o-mini",
        "gpt-4o",
        "text-embedding-3-small",
    }
    assert {m.id for m in harness.client("picky").models.list()} == {"gpt-4o-mini", "fast"}


def test_model_allow_list_and_alias(harness: Harness) -> None:
    client = harness.client("picky")
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert harness.upstream.last.body["model"] == "gpt-4o-mini"


def test_roles_not_listed_in_policy_are_not_screened(harness: Harness) -> None:
    messages = [{"role": "system", "content": "kaboom persona"}, {"role": "user", "content": "hi"}]
    harness.client("picky").chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert harness.upstream.last.body["messages"] == messages


# --- authentication, isolation, errors ------------------------------------------------------------


def test_missing_and_unknown_keys_get_401(harness: Harness) -> None:
    response = harness.post("/v1/chat/completions", {"model": "m", "messages": []}, tenant=None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    with (
        openai.OpenAI(base_url=f"{harness.proxy_url}/v1", api_key="sk-nope", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert harness.upstream.received == []


def test_each_tenant_gets_its_own_policy_and_audit_scope(harness: Harness) -> None:
    raw = chat(harness, "zarquon", tenant="logger")
    assert raw.parse().choices[0].message.content
    with pytest.raises(openai.BadRequestError):
        chat(harness, "zarquon", tenant="blocker")
    (logger_in, logger_out) = harness.records_for(raw.headers["x-request-id"])
    assert logger_in["tenant"] == logger_out["tenant"] == "logger"


def test_upstream_error_json_is_passed_through_with_its_status(harness: Harness) -> None:
    harness.upstream.status = 429
    harness.upstream.error = {
        "error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}
    }
    with pytest.raises(openai.RateLimitError) as caught:
        chat(harness, "hi")
    assert caught.value.code == "rate_limit_exceeded"


def test_upstream_non_json_body_is_a_502(harness: Harness) -> None:
    harness.upstream.status = 500
    harness.upstream.raw_body = b"<html>oops</html>"
    response = harness.post(
        "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"
    assert UPSTREAM_KEY not in response.text


def test_malformed_json_and_bad_fields_get_400(harness: Harness) -> None:
    assert harness.post("/v1/chat/completions", b"{not json").json()["error"]["code"] == "invalid_json"
    response = harness.post("/v1/chat/completions", {"model": "m", "messages": "hi"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"


def test_oversized_body_gets_413(harness: Harness) -> None:
    huge = {"model": "m", "messages": [{"role": "user", "content": "x" * 300_000}]}
    response = harness.post("/v1/chat/completions", huge)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_path_and_wrong_method(harness: Harness) -> None:
    import httpx

    missing = httpx.get(f"{harness.proxy_url}/v1/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
    wrong = httpx.get(f"{harness.proxy_url}/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"

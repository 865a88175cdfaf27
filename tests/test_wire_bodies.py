"""Bodies the proxy writes: checked against OpenAI's OpenAPI description and the ``openai`` SDK's types.

Schema checks come last in each test: without the spec they skip the test, but only after the SDK checks ran.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from crest_proxy.errors import BadRequestError, ContentPolicyError, ProxyError, UpstreamTimeoutError
from crest_proxy.wire import (
    block_response,
    chat_chunk,
    error_body,
    error_body_for,
    refusal_response,
    response_texts,
)
from tests.openapi_schemas import assert_valid

MESSAGE = "This request was blocked by the content policy."
CHAT_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "bad"}]}
COMPLETIONS_REQUEST = {"model": "gpt-3.5-turbo-instruct", "prompt": "bad"}
RESPONSES_REQUEST = {"model": "gpt-4.1", "input": "bad", "instructions": "secret", "temperature": 0.2}


# --- error bodies ------------------------------------------------------------------------------------


def test_error_body_shape() -> None:
    body = error_body("nope", type="invalid_request_error", code="content_policy_violation", param="messages")
    assert body == {
        "error": {
            "message": "nope",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "content_policy_violation",
        }
    }
    assert_valid(body, "ErrorResponse")


@pytest.mark.parametrize(
    "exc",
    [
        BadRequestError("bad", param="n"),
        ContentPolicyError("blocked"),
        UpstreamTimeoutError("slow"),
        ProxyError("boom", code="custom"),
    ],
)
def test_error_body_for_carries_the_exception_fields(exc: ProxyError) -> None:
    body = error_body_for(exc)
    assert body["error"] == {
        "message": exc.message,
        "type": exc.error_type,
        "param": exc.param,
        "code": exc.code,
    }
    assert_valid(body, "ErrorResponse")


def test_error_body_with_null_code_is_valid() -> None:

    # --- refusals ------------------------------------------------------------------------------------------
    assert_valid(error_body("x", type="server_error", code=None), "ErrorResponse")


def test_chat_refusal_is_a_valid_chat_completion() -> None:
    body = refusal_response("chat.completions", CHAT_REQUEST, MESSAGE, request_id="req1", created=1700000000)
    parsed = ChatCompletion.model_validate(body)
    assert parsed.id == "chatcmpl-crest-req1"
    assert parsed.model == "gpt-4o-mini"
    assert parsed.created == 1700000000
    assert parsed.choices[0].message.content == MESSAGE
    assert parsed.choices[0].message.role == "assistant"
    assert parsed.choices[0].message.refusal is None
    assert parsed.choices[0].finish_reason == "content_filter"
    assert parsed.usage is not None and parsed.usage.total_tokens == 0
    assert_valid(body, "CreateChatCompletionResponse")


def test_chat_refusal_answers_every_requested_choice() -> None:
    body = refusal_response("chat.completions", {**CHAT_REQUEST, "n": 3}, MESSAGE, request_id="r")
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert all(c["message"]["content"] == MESSAGE for c in body["choices"])


def test_completions_refusal_is_a_valid_completion() -> None:
    request = {**COMPLETIONS_REQUEST, "prompt": ["a", "b"], "n": 2}
    body = refusal_response("completions", request, MESSAGE, request_id="req2")
    parsed = Completion.model_validate(body)
    assert parsed.id == "cmpl-crest-req2"
    assert parsed.object == "text_completion"
    assert [c.index for c in parsed.choices] == [0, 1, 2, 3]  # n choices per prompt
    assert {c.text for c in parsed.choices} == {MESSAGE}
    assert {c.finish_reason for c in parsed.choices} == {"content_filter"}
    assert_valid(body, "CreateCompletionResponse")


def test_responses_refusal_is_a_valid_incomplete_response() -> None:
    body = refusal_response("responses", RESPONSES_REQUEST, MESSAGE, request_id="req3", created=5)
    parsed = Response.model_validate(body)
    assert parsed.id == "resp_crest_req3"
    assert parsed.status == "incomplete"
    assert parsed.incomplete_details is not None and parsed.incomplete_details.reason == "content_filter"
    assert parsed.output_text == MESSAGE
    assert parsed.model == "gpt-4.1"
    assert parsed.temperature == 0.2
    assert parsed.instructions is None  # the blocked text is not reflected back
    assert_valid(body, "Response")


def test_refusal_texts_are_what_the_response_extractor_sees() -> None:
    for endpoint, request in [
        ("chat.completions", CHAT_REQUEST),
        ("completions", COMPLETIONS_REQUEST),
        ("responses", RESPONSES_REQUEST),
    ]:
        body = refusal_response(endpoint, request, MESSAGE, request_id="x")
        assert [s.text for s in response_texts(endpoint, body)] == [MESSAGE]


def test_embeddings_has_no_refusal() -> None:
    with pytest.raises(ValueError, match="embeddings"):
        refusal_response("embeddings", {"model": "e", "input": "x"}, MESSAGE, request_id="x")


# --- outbound blocks -----------------------------------------------------------------------------------


def upstream_chat() -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1711111111,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "harmful answer",
                    "refusal": None,
                    "annotations": [
                        {
                            "type": "url_citation",
                            "url_citation": {
                                "start_index": 0,
                                "end_index": 4,
                                "url": "https://x.y",
                                "title": "t",
                            },
                        }
                    ],
                },
                "logprobs": {"content": [], "refusal": None},
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"how": "bad"}'},
                        }
                    ],
                    "function_call": {"name": "f", "arguments": "{}"},
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            },
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def test_chat_block_replaces_every_choice_and_keeps_the_envelope() -> None:
    upstream = upstream_chat()
    body = block_response("chat.completions", upstream, MESSAGE)
    parsed = ChatCompletion.model_validate(body)
    for choice in parsed.choices:
        assert choice.message.content == MESSAGE
        assert choice.message.tool_calls is None and choice.message.function_call is None
        assert choice.message.annotations is None and choice.logprobs is None
        assert choice.finish_reason == "content_filter"
    for key in ("id", "model", "usage", "created", "system_fingerprint"):
        assert body[key] == upstream[key]
    assert upstream == upstream_chat()  # not mutated
    assert [s.text for s in response_texts("chat.completions", body)] == [MESSAGE, MESSAGE]
    assert_valid(body, "CreateChatCompletionResponse")


def test_chat_block_of_selected_choices_leaves_the_others() -> None:
    body = block_response("chat.completions", upstream_chat(), MESSAGE, choice_indexes={1})
    assert body["choices"][0] == upstream_chat()["choices"][0]
    assert body["choices"][1]["message"] == {"role": "assistant", "content": MESSAGE, "refusal": None}
    assert body["choices"][1]["finish_reason"] == "content_filter"
    assert_valid(body, "CreateChatCompletionResponse")


def test_completions_block() -> None:
    upstream = {
        "id": "cmpl-up",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "text": "bad", "logprobs": {"tokens": ["bad"]}, "finish_reason": "stop"},
            {"index": 1, "text": "fine", "logprobs": None, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    body = block_response("completions", upstream, MESSAGE, choice_indexes=[0])
    parsed = Completion.model_validate(body)
    assert (parsed.choices[0].text, parsed.choices[0].finish_reason, parsed.choices[0].logprobs) == (
        MESSAGE,
        "content_filter",
        None,
    )
    assert parsed.choices[1].text == "fine"
    assert body["usage"] == upstream["usage"]
    assert_valid(body, "CreateCompletionResponse")


def upstream_response() -> dict[str, Any]:
    return {
        "id": "resp_up",
        "object": "response",
        "created_at": 1741476777,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": "gpt-4.1-2025-04-14",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}]},
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "harmful", "annotations": [], "logprobs": []}],
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "c",
                "name": "f",
                "arguments": "{}",
                "status": "completed",
            },
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "metadata": {},
        "usage": {
            "input_tokens": 3,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 1},
            "total_tokens": 7,
        },
    }


def test_responses_block_replaces_the_whole_output() -> None:
    upstream = upstream_response()
    body = block_response("responses", upstream, MESSAGE)
    parsed = Response.model_validate(body)
    assert parsed.output_text == MESSAGE
    assert len(parsed.output) == 1
    assert parsed.status == "incomplete"
    assert parsed.incomplete_details is not None and parsed.incomplete_details.reason == "content_filter"
    for key in ("id", "model", "usage", "created_at"):
        assert body[key] == upstream[key]
    assert [s.text for s in response_texts("responses", body)] == [MESSAGE]
    assert_valid(upstream, "Response")  # the fixture itself is realistic
    assert_valid(body, "Response")


def test_responses_block_updates_the_sdk_output_text_field() -> None:
    upstream = {**upstream_response(), "output_text": "harmful"}
    assert block_response("responses", upstream, MESSAGE)["output_text"] == MESSAGE


def test_embeddings_cannot_be_blocked_as_a_body() -> None:
    with pytest.raises(ValueError):
        block_response("embeddings", {"object": "list", "data": []}, MESSAGE)


# --- stream chunks -------------------------------------------------------------------------------------

TEMPLATE = {
    "id": "chatcmpl-s",
    "object": "chat.completion.chunk",
    "created": 1711111111,
    "model": "gpt-4o",
    "system_fingerprint": "fp_9",
    "choices": [{"index": 0, "delta": {"content": "upstream text"}, "logprobs": None, "finish_reason": None}],
}


@pytest.mark.parametrize(
    ("kwargs", "delta", "finish"),
    [
        ({"content": "hello"}, {"content": "hello"}, None),
        ({"finish_reason": "content_filter"}, {}, "content_filter"),
        ({"role": "assistant", "content": ""}, {"role": "assistant", "content": ""}, None),
    ],
)
def test_chat_chunk(kwargs: dict[str, Any], delta: dict[str, Any], finish: str | None) -> None:
    chunk = chat_chunk(TEMPLATE, 2, **kwargs)
    parsed = ChatCompletionChunk.model_validate(chunk)
    assert (parsed.id, parsed.created, parsed.model, parsed.system_fingerprint) == (
        "chatcmpl-s",
        1711111111,
        "gpt-4o",
        "fp_9",
    )
    assert chunk["choices"] == [{"index": 2, "delta": delta, "logprobs": None, "finish_reason": finish}]
    assert TEMPLATE["choices"][0]["delta"] == {"content": "upstream text"}  # template untouched
    assert_valid(chunk, "CreateChatCompletionStreamResponse")


def test_chat_chunk_leaves_out_null_fingerprint() -> None:
    # The spec types system_fingerprint as a non-null string; upstreams sometimes send null.
    chunk = chat_chunk({**TEMPLATE, "system_fingerprint": None}, 0, content="x")
    assert "system_fingerprint" not in chunk
    assert_valid(chunk, "CreateChatCompletionStreamResponse")


def test_schema_helper_rejects_invalid_bodies() -> None:
    # Guards the helper itself: a refusal missing required fields must fail validation.
    broken = copy.deepcopy(refusal_response("responses", RESPONSES_REQUEST, MESSAGE, request_id="x"))
    del broken["tools"]
    with pytest.raises(pytest.fail.Exception, match="tools"):
        assert_valid(broken, "Response")
    chunk = chat_chunk(TEMPLATE, 0, finish_reason="exploded")
    with pytest.raises(pytest.fail.Exception, match="finish_reason"):
        assert_valid(chunk, "CreateChatCompletionStreamResponse")

"""validate_request: malformed bodies become BadRequestError with OpenAI's param, code and wording."""

from __future__ import annotations

from typing import Any

import pytest

from crest_proxy.errors import BadRequestError
from crest_proxy.wire import error_body_for, validate_request

USER = {"role": "user", "content": "hi"}


def chat(*messages: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": list(messages), **extra}


VALID = [
    ("chat.completions", chat(USER)),
    ("chat.completions", chat(USER, stream=True, n=2)),
    ("chat.completions", chat(USER, stream=None, n=None)),
    (
        "chat.completions",
        chat(
            {"role": "system", "content": [{"type": "text", "text": "s"}]},
            {"role": "developer", "content": "d"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "r"},
            {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
            {"role": "function", "name": "f", "content": None},
            {"role": "user", "content": [{"type": "vendor_video", "video": {"url": "v"}}]},
        ),
    ),
    ("completions", {"model": "m", "prompt": "p"}),
    ("completions", {"model": "m", "prompt": ["a", "b"]}),
    ("completions", {"model": "m", "prompt": [1, 2]}),
    ("completions", {"model": "m", "prompt": [[1], [2, 3]]}),
    ("completions", {"model": "m", "prompt": None}),
    ("responses", {"model": "m", "input": "x", "instructions": None}),
    ("responses", {"model": "m", "previous_response_id": "resp_1"}),
    (
        "responses",
        {
            "model": "m",
            "instructions": "i",
            "input": [
                {"role": "user", "content": "x"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "y"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "o"},
                {"type": "item_reference", "id": "msg_1"},
            ],
        },
    ),
    ("embeddings", {"model": "e", "input": "x"}),
    ("embeddings", {"model": "e", "input": ["x", "y"]}),
    ("embeddings", {"model": "e", "input": [[1, 2], [3]]}),
]


@pytest.mark.parametrize(("endpoint", "body"), VALID)
def test_valid_requests_pass(endpoint: str, body: dict[str, Any]) -> None:
    validate_request(endpoint, body)


INVALID = [
    # (endpoint, body, param, code)
    ("chat.completions", ["not", "an", "object"], None, "invalid_type"),
    ("chat.completions", "text", None, "invalid_type"),
    ("chat.completions", {"messages": [USER]}, "model", "missing_required_parameter"),
    ("chat.completions", {"model": 3, "messages": [USER]}, "model", "invalid_type"),
    ("chat.completions", {"model": " ", "messages": [USER]}, "model", "invalid_value"),
    ("chat.completions", {"model": "m"}, "messages", "missing_required_parameter"),
    ("chat.completions", {"model": "m", "messages": "hi"}, "messages", "invalid_type"),
    ("chat.completions", chat(), "messages", "empty_array"),
    ("chat.completions", chat(USER, "oops"), "messages[1]", "invalid_type"),
    ("chat.completions", chat({"content": "x"}), "messages[0].role", "missing_required_parameter"),
    ("chat.completions", chat({"role": "robot", "content": "x"}), "messages[0].role", "invalid_value"),
    ("chat.completions", chat({"role": 1, "content": "x"}), "messages[0].role", "invalid_type"),
    ("chat.completions", chat({"role": "user"}), "messages[0].content", "missing_required_parameter"),
    (
        "chat.completions",
        chat(USER, {"role": "user", "content": {"text": "x"}}),
        "messages[1].content",
        "invalid_type",
    ),
    ("chat.completions", chat({"role": "system", "content": 5}), "messages[0].content", "invalid_type"),
    ("chat.completions", chat({"role": "user", "content": []}), "messages[0].content", "empty_array"),
    ("chat.completions", chat({"role": "user", "content": ["x"]}), "messages[0].content[0]", "invalid_type"),
    (
        "chat.completions",
        chat({"role": "user", "content": [{"text": "x"}]}),
        "messages[0].content[0].type",
        "missing_required_parameter",
    ),
    (
        "chat.completions",
        chat({"role": "user", "content": [{"type": "text"}]}),
        "messages[0].content[0].text",
        "missing_required_parameter",
    ),
    (
        "chat.completions",
        chat({"role": "user", "content": [{"type": "text", "text": 1}]}),
        "messages[0].content[0].text",
        "invalid_type",
    ),
    (
        "chat.completions",
        chat({"role": "assistant", "content": None, "refusal": 1}),
        "messages[0].refusal",
        "invalid_type",
    ),
    (
        "chat.completions",
        chat({"role": "assistant", "tool_calls": {}}),
        "messages[0].tool_calls",
        "invalid_type",
    ),
    (
        "chat.completions",
        chat({"role": "assistant", "tool_calls": ["x"]}),
        "messages[0].tool_calls[0]",
        "invalid_type",
    ),
    (
        "chat.completions",
        chat(
            {
                "role": "assistant",
                "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
            }
        ),
        "messages[0].tool_calls[0].function.arguments",
        "invalid_type",
    ),
    (
        "chat.completions",
        chat({"role": "assistant", "function_call": "f"}),
        "messages[0].function_call",
        "invalid_type",
    ),
    ("chat.completions", chat(USER, stream="yes"), "stream", "invalid_type"),
    ("chat.completions", chat(USER, n="2"), "n", "invalid_type"),
    ("chat.completions", chat(USER, n=True), "n", "invalid_type"),
    ("chat.completions", chat(USER, n=0), "n", "integer_below_min_value"),
    ("completions", {"model": "m"}, "prompt", "missing_required_parameter"),
    ("completions", {"model": "m", "prompt": 5}, "prompt", "invalid_type"),
    ("completions", {"model": "m", "prompt": ["a", 1]}, "prompt", "invalid_type"),
    ("completions", {"model": "m", "prompt": [[1], []]}, "prompt", "invalid_type"),
    ("completions", {"model": "m", "prompt": [True]}, "prompt", "invalid_type"),
    ("completions", {"model": "m", "prompt": "p", "n": -1}, "n", "integer_below_min_value"),
    ("responses", {"model": "m", "input": {"role": "user"}}, "input", "invalid_type"),
    ("responses", {"model": "m", "input": 3}, "input", "invalid_type"),
    ("responses", {"model": "m", "input": "x", "instructions": ["a"]}, "instructions", "invalid_type"),
    ("responses", {"model": "m", "input": ["x"]}, "input[0]", "invalid_type"),
    (
        "responses",
        {"model": "m", "input": [{"role": "user", "content": 1}]},
        "input[0].content",
        "invalid_type",
    ),
    (
        "responses",
        {"model": "m", "input": [{"role": "user"}]},
        "input[0].content",
        "missing_required_parameter",
    ),
    (
        "responses",
        {"model": "m", "input": [{"type": "function_call", "arguments": {}}]},
        "input[0].arguments",
        "invalid_type",
    ),
    (
        "responses",
        {"model": "m", "input": [{"type": "function_call_output", "output": 1}]},
        "input[0].output",
        "invalid_type",
    ),
    ("responses", {"model": "m", "input": [{"type": 7}]}, "input[0].type", "invalid_type"),
    ("responses", {"input": "x"}, "model", "missing_required_parameter"),
    ("responses", {"model": "m", "input": "x", "stream": 1}, "stream", "invalid_type"),
    ("embeddings", {"model": "e"}, "input", "missing_required_parameter"),
    ("embeddings", {"model": "e", "input": []}, "input", "empty_array"),
    ("embeddings", {"model": "e", "input": {"a": 1}}, "input", "invalid_type"),
    ("embeddings", {"model": "e", "input": ["x", 2]}, "input", "invalid_type"),
]


@pytest.mark.parametrize(("endpoint", "body", "param", "code"), INVALID)
def test_invalid_requests_name_the_param(endpoint: str, body: Any, param: str | None, code: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        validate_request(endpoint, body)
    assert (caught.value.param, caught.value.code) == (param, code)
    assert caught.value.status_code == 400
    # OpenAI's invalid-value message quotes the value, not the param.
    if param is not None and code != "invalid_value":
        assert f"'{param}'" in caught.value.message


def test_messages_follow_openai_wording() -> None:
    cases = [
        (
            chat(),
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
        ),
        (
            chat(USER, {"role": "user", "content": {"a": 1}}),
            "Invalid type for 'messages[1].content': expected one of a string or array of objects, "
            "but got an object instead.",
        ),
        ({"model": "m"}, "Missing required parameter: 'messages'."),
        (
            chat(USER, n=0),
            "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        ),
        (chat(USER, stream="x"), "Invalid type for 'stream': expected a boolean, but got a string instead."),
    ]
    for body, message in cases:
        with pytest.raises(BadRequestError) as caught:
            validate_request("chat.completions", body)
        assert caught.value.message == message


def test_bad_role_lists_the_supported_roles() -> None:
    with pytest.raises(BadRequestError) as caught:
        validate_request("chat.completions", chat({"role": "robot", "content": "x"}))
    assert caught.value.message.startswith("Invalid value: 'robot'. Supported values are: 'system'")
    assert "and 'developer'." in caught.value.message


def test_the_error_becomes_an_openai_error_body() -> None:
    with pytest.raises(BadRequestError) as caught:
        validate_request("chat.completions", chat({"role": "user", "content": 5}))
    body = error_body_for(caught.value)
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "messages[0].content"
    assert body["error"]["code"] == "invalid_type"


def test_unknown_endpoint_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        validate_request("images.generations", {"model": "m"})

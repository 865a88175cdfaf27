"""Which strings of OpenAI bodies are screened, where they live, and how new strings are put back."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest

from crest_proxy.wire import (
    TextSlot,
    choice_index,
    path_param,
    replace_texts,
    request_texts,
    response_texts,
)

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}


def slots(*rows: tuple[Any, ...]) -> list[TextSlot]:
    """Slots from (path, text, role, kind[, inner[, key]]) rows."""
    return [TextSlot(*row) for row in rows]


CHAT_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "be nice"},
        {"role": "developer", "content": [{"type": "text", "text": "dev rule"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look at this"},
                IMAGE,
                AUDIO,
                {"type": "text", "text": "and this"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "refusal": "I said no",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q": "x"}'}},
                {"id": "c2", "type": "custom", "custom": {"name": "g", "input": "raw input"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "tool result"},
        {"role": "assistant", "content": "ok", "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "legacy result"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "t"}, {"type": "refusal", "refusal": "r"}],
        },
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "vendor_field": {"kept": True},
}

ARGS = ("messages", 3, "tool_calls", 0, "function", "arguments")
TOOL = "tool_arguments"
CHAT_REQUEST_SLOTS = slots(
    (("messages", 0, "content"), "be nice", "system", "content"),
    (("messages", 1, "content", 0, "text"), "dev rule", "developer", "content"),
    (("messages", 2, "content", 0, "text"), "look at this", "user", "content"),
    (("messages", 2, "content", 3, "text"), "and this", "user", "content"),
    (("messages", 3, "refusal"), "I said no", "assistant", "refusal"),
    (("messages", 3, "tool_calls", 0, "function", "name"), "f", "assistant", "tool_arguments"),
    # Arguments are JSON: their keys and string values, decoded, each with its place in the document.
    (ARGS, "q", "assistant", "tool_arguments", (0, 0), True),
    (ARGS, "x", "assistant", "tool_arguments", (0, 1), False),
    (("messages", 3, "tool_calls", 1, "custom", "name"), "g", "assistant", "tool_arguments"),
    (("messages", 3, "tool_calls", 1, "custom", "input"), "raw input", "assistant", "tool_arguments"),
    (("messages", 4, "content"), "tool result", "tool", "tool_output"),
    (("messages", 5, "content"), "ok", "assistant", "content"),
    (("messages", 5, "function_call", "name"), "f", "assistant", "tool_arguments"),
    (("messages", 6, "content"), "legacy result", "function", "tool_output"),
    (("messages", 6, "name"), "f", "function", "name"),
    (("messages", 7, "content", 0, "text"), "t", "assistant", "content"),
    (("messages", 7, "content", 1, "refusal"), "r", "assistant", "refusal"),
    (("tools", 0, "function", "name"), "f", "developer", "tool_definition"),
)

RESPONSES_REQUEST: dict[str, Any] = {
    "model": "gpt-4.1",
    "instructions": "be brief",
    "input": [
        {"role": "user", "content": "plain"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "part one"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
                {"type": "input_file", "file_id": "file-1"},
            ],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "earlier"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "result text"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "parts"}],
        },
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thinking"}]},
        {"type": "item_reference", "id": "msg_1"},
    ],
}

RESPONSES_REQUEST_SLOTS = slots(
    (("instructions",), "be brief", "developer", "instructions"),
    (("input", 0, "content"), "plain", "user", "content"),
    (("input", 1, "content", 0, "text"), "part one", "user", "content"),
    (("input", 2, "content", 0, "text"), "earlier", "assistant", "content"),
    (("input", 3, "name"), "f", "assistant", "tool_arguments"),
    (("input", 3, "arguments"), "a", "assistant", "tool_arguments", (0, 0), True),
    (("input", 4, "output"), "result text", "tool", "tool_output"),
    (("input", 5, "output", 0, "text"), "parts", "tool", "tool_output"),
    (("input", 6, "summary", 0, "text"), "thinking", "assistant", "reasoning"),
)

REQUEST_CASES = [
    ("chat.completions", CHAT_REQUEST, CHAT_REQUEST_SLOTS),
    ("responses", RESPONSES_REQUEST, RESPONSES_REQUEST_SLOTS),
    ("responses", {"model": "m", "input": "hi"}, slots((("input",), "hi", "user", "input"))),
    ("completions", {"model": "m", "prompt": "once"}, slots((("prompt",), "once", None, "prompt"))),
    (
        "completions",
        {"model": "m", "prompt": ["a", "b"]},
        slots((("prompt", 0), "a", None, "prompt"), (("prompt", 1), "b", None, "prompt")),
    ),
    ("completions", {"model": "m", "prompt": [1, 2, 3]}, []),
    ("completions", {"model": "m", "prompt": [[1, 2], [3]]}, []),
    ("embeddings", {"model": "e", "input": "embed me"}, slots((("input",), "embed me", None, "input"))),
    (
        "embeddings",
        {"model": "e", "input": ["x", "y"]},
        slots((("input", 0), "x", None, "input"), (("input", 1), "y", None, "input")),
    ),
    ("embeddings", {"model": "e", "input": [[1, 2]]}, []),
]


@pytest.mark.parametrize(("endpoint", "body", "expected"), REQUEST_CASES)
def test_request_texts(endpoint: str, body: dict[str, Any], expected: list[TextSlot]) -> None:
    assert request_texts(endpoint, body) == expected


def test_request_texts_ignore_malformed_parts_rather_than_crash() -> None:
    body = {"messages": ["not a message", {"role": "user", "content": [7, {"type": "text", "text": 3}]}]}
    assert request_texts("chat.completions", body) == []
    # An item of a type no row names is read whole (every key and string), whatever its shape.
    odd = {"input": [{"type": ["odd"]}, None]}
    assert [s.text for s in request_texts("responses", odd)] == ["type", "odd"]


def test_an_unknown_part_type_with_text_is_still_screened() -> None:
    # A vendor part type must not be a way around the guard.
    body = {"messages": [{"role": "user", "content": [{"type": "vendor_text", "text": "sneaky"}]}]}
    assert [s.text for s in request_texts("chat.completions", body)] == ["sneaky"]


CHAT_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "first", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": "nope",
                "reasoning_content": "why",
                "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                "function_call": {"name": "g", "arguments": "[1]"},
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        },
        {
            "index": 2,
            "message": {"role": "assistant", "content": [{"type": "text", "text": "as parts"}]},
            "finish_reason": "stop",
        },
    ],
}

RESPONSES_RESPONSE: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "output": [
        {"type": "reasoning", "id": "rs", "summary": []},
        {
            "type": "message",
            "id": "msg",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "answer", "annotations": []},
                {"type": "refusal", "refusal": "refused"},
            ],
        },
        {"type": "function_call", "id": "fc", "call_id": "c", "name": "f", "arguments": '{"x": 2}'},
        {"type": "custom_tool_call", "id": "ct", "call_id": "d", "name": "g", "input": "free text"},
        {"type": "web_search_call", "id": "ws", "status": "completed"},
    ],
}

RESPONSE_CASES = [
    (
        "chat.completions",
        CHAT_RESPONSE,
        slots(
            (("choices", 0, "message", "content"), "first", "assistant", "content"),
            (("choices", 1, "message", "refusal"), "nope", "assistant", "refusal"),
            (("choices", 1, "message", "reasoning_content"), "why", "assistant", "reasoning"),
            # Within one message, its own fields come before those of its arrays (body order by position).
            (("choices", 1, "message", "function_call", "name"), "g", "assistant", "tool_arguments"),
            (("choices", 1, "message", "tool_calls", 0, "function", "name"), "f", "assistant", TOOL),
            (("choices", 2, "message", "content", 0, "text"), "as parts", "assistant", "content"),
        ),
    ),
    (
        "completions",
        {"choices": [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}]},
        slots((("choices", 0, "text"), "a", None, "text"), (("choices", 1, "text"), "b", None, "text")),
    ),
    (
        "responses",
        RESPONSES_RESPONSE,
        slots(
            (("output", 1, "content", 0, "text"), "answer", "assistant", "content"),
            (("output", 1, "content", 1, "refusal"), "refused", "assistant", "refusal"),
            (("output", 2, "name"), "f", "assistant", "tool_arguments"),
            (("output", 2, "arguments"), "x", "assistant", "tool_arguments", (0, 0), True),
            (("output", 3, "name"), "g", "assistant", "tool_arguments"),
            (("output", 3, "input"), "free text", "assistant", "tool_arguments"),
        ),
    ),
    ("embeddings", {"object": "list", "data": [{"embedding": [0.1], "index": 0}]}, []),
]


@pytest.mark.parametrize(("endpoint", "body", "expected"), RESPONSE_CASES)
def test_response_texts(endpoint: str, body: dict[str, Any], expected: list[TextSlot]) -> None:
    assert response_texts(endpoint, body) == expected


def test_response_texts_of_a_non_object_is_empty() -> None:
    assert response_texts("chat.completions", ["not", "an", "object"]) == []  # type: ignore[arg-type]


def test_choice_index_tells_choices_apart() -> None:
    found = [choice_index(s) for s in response_texts("chat.completions", CHAT_RESPONSE)]
    assert found == [0, 1, 1, 1, 1, 2]
    assert {choice_index(s) for s in response_texts("responses", RESPONSES_RESPONSE)} == {None}


def test_unknown_endpoint_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        request_texts("images", {})


ALL_BODIES = [
    *((endpoint, body, request_texts) for endpoint, body, _ in REQUEST_CASES),
    *((endpoint, body, response_texts) for endpoint, body, _ in RESPONSE_CASES),
]


@pytest.mark.parametrize(("endpoint", "body", "extract"), ALL_BODIES)
def test_replacing_with_the_same_texts_gives_an_equal_body(
    endpoint: str, body: dict[str, Any], extract: Any
) -> None:
    original = copy.deepcopy(body)
    same = replace_texts(body, {s: s.text for s in extract(endpoint, body)})
    assert same == original
    assert body == original  # the input is never mutated


@pytest.mark.parametrize(("endpoint", "body", "extract"), ALL_BODIES)
def test_replaced_texts_land_exactly_where_extracted(
    endpoint: str, body: dict[str, Any], extract: Any
) -> None:
    found = extract(endpoint, body)
    changed = replace_texts(body, {s: f"<{i}>" for i, s in enumerate(found)})
    assert [s.text for s in extract(endpoint, changed)] == [f"<{i}>" for i in range(len(found))]
    assert [(s.path, s.role, s.kind) for s in extract(endpoint, changed)] == [
        (s.path, s.role, s.kind) for s in found
    ]


def test_replace_keeps_unknown_fields_and_untouched_parts() -> None:
    changed = replace_texts(CHAT_REQUEST, {("messages", 2, "content", 3, "text"): "[REDACTED]"})
    assert changed["vendor_field"] == {"kept": True}
    assert changed["tools"] == CHAT_REQUEST["tools"]
    parts = changed["messages"][2]["content"]
    assert parts[1] == IMAGE and parts[2] == AUDIO
    assert parts[3] == {"type": "text", "text": "[REDACTED]"}
    assert CHAT_REQUEST["messages"][2]["content"][3]["text"] == "and this"


@pytest.mark.parametrize(
    "path",
    [
        ("messages", 9, "content"),  # no such message
        ("messages", -1, "content"),  # negative indexes are refused
        ("messages", "0", "content"),  # a str never indexes a list
        ("messages", 2, "content", 1, "image_url"),  # not a string
        ("model", "x"),
        (),
    ],
)
def test_replace_rejects_paths_that_do_not_name_a_string(path: tuple[str | int, ...]) -> None:
    with pytest.raises(ValueError):
        replace_texts(CHAT_REQUEST, {path: "x"})


def test_path_param_is_written_like_openai_params() -> None:
    assert path_param(("messages", 2, "content", 0, "text")) == "messages[2].content[0].text"
    assert path_param(("input",)) == "input"


def test_wire_imports_no_server_or_model_libraries() -> None:
    # wire is plain dicts in, dicts out: it must stay importable without starlette, httpx or torch.
    heavy = ("starlette", "httpx", "torch", "transformers", "yaml")
    code = f"import sys, crest_proxy.wire; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

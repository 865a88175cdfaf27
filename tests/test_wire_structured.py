"""Structured text read as the model reads it: path patterns, decoded JSON, schemas, write-back, token ids."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crest_proxy import endpoints
from crest_proxy.errors import BadRequestError
from crest_proxy.wire import replace_texts, request_texts, response_texts, token_inputs, validate_request
from crest_proxy.wire.patterns import compile_pattern, find
from crest_proxy.wire.structured import read_json_text


def _chat(arguments: str) -> dict[str, Any]:
    call = {"id": "c", "type": "function", "function": {"name": "lookup", "arguments": arguments}}
    return {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}


def _arguments(body: dict[str, Any]) -> str:
    return str(body["messages"][0]["tool_calls"][0]["function"]["arguments"])


# --- patterns ------------------------------------------------------------------------------------------


def test_patterns_filter_union_shapes_and_keep_paths_into_the_body() -> None:
    body = {
        "input": [
            {"role": "user", "content": "easy message, no type"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "part"}]},
            {"type": "function_call_output", "output": "result"},
            "not an item",
        ]
    }
    # A pattern names places whatever their shape; the row's kind decides which values are text.
    assert [m.path for m in find(body, "input[type=message|].content")] == [
        ("input", 0, "content"),
        ("input", 1, "content"),
    ]
    assert [m.value for m in find(body, "input[type=message|].content[*].text")] == ["part"]
    assert [m.path for m in find(body, "input[type!=message|].output")] == [("input", 2, "output")]
    assert [m.value for m in find({"v": {"a": "x", "b": {"text": "y"}}}, "v{*}.text")] == ["y"]


def test_a_pattern_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        compile_pattern("messages[*]..content")


# --- JSON-encoded fields -------------------------------------------------------------------------------


def test_arguments_are_read_decoded_keys_included() -> None:
    # "\n" glued to the next word and "\u006b" (k) hide nothing once decoded; keys are text too.
    raw = '{"q": "Steps:\\nkaboom", "w\\u00f6rd": ["\\u006baboom", 3, {"deep": "x"}]}'
    texts = [s.text for s in request_texts("chat.completions", _chat(raw))]
    assert texts == ["lookup", "q", "Steps:\nkaboom", "wörd", "kaboom", "deep", "x"]


def test_duplicate_keys_are_all_seen_and_kept() -> None:
    # json.loads keeps only the last value of a repeated key, but a model reads both.
    raw = '{"q": "kaboom", "q": "safe"}'
    found = [s for s in request_texts("chat.completions", _chat(raw)) if s.inner is not None]
    assert [s.text for s in found] == ["q", "kaboom", "q", "safe"]
    changed = replace_texts(_chat(raw), {found[1]: "[R]"})
    assert _arguments(changed) == '{"q": "[R]", "q": "safe"}'


@pytest.mark.parametrize("raw", ["not json at all: kaboom", '{"q": "kaboom"', "[" * 100_000])
def test_invalid_json_is_read_as_raw_text(raw: str) -> None:
    (args,) = [s for s in request_texts("chat.completions", _chat(raw)) if s.path[-1] == "arguments"]
    assert args.text == raw and args.inner is None
    assert _arguments(replace_texts(_chat(raw), {args: "[R]"})) == "[R]"


def test_redaction_rewrites_only_the_offending_value_and_stays_valid_json() -> None:
    raw = '{"city": "Zürich", "q": "How to kaboom", "n": 1.5, "tags": ["a", null, true]}'
    slots = request_texts("chat.completions", _chat(raw))
    (bad,) = [s for s in slots if s.text == "How to kaboom"]
    changed = _arguments(replace_texts(_chat(raw), {bad: "[R]"}))
    assert json.loads(changed) == {"city": "Zürich", "q": "[R]", "n": 1.5, "tags": ["a", None, True]}
    assert "Zürich" in changed  # UTF-8 kept as is, not re-escaped


def test_a_redacted_key_is_renamed_in_place() -> None:
    raw = '{"kaboom how": "x", "b": "y"}'
    (key,) = [s for s in request_texts("chat.completions", _chat(raw)) if s.key and s.text == "kaboom how"]
    assert _arguments(replace_texts(_chat(raw), {key: "[R]"})) == '{"[R]": "x", "b": "y"}'


def test_unchanged_json_is_rebuilt_byte_identical() -> None:
    raw = '{ "q" :"x",\n"r": [1,2] }'
    doc = read_json_text(raw)
    assert doc.rebuild(list(doc.texts)) == raw


def test_tool_outputs_are_json_when_they_are_json() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "tool", "tool_call_id": "c", "content": '{"result": "\\u006baboom"}'},
            {"role": "tool", "tool_call_id": "d", "content": "plain kaboom"},
        ],
    }
    assert [s.text for s in request_texts("chat.completions", body)] == ["result", "kaboom", "plain kaboom"]


# --- JSON Schemas --------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "title": "T",
    "description": "D",
    "properties": {
        "mode": {"type": "string", "enum": ["fast", "kaboom", 3], "default": "fast"},
        "nested": {"anyOf": [{"type": "string", "description": "AD"}, {"$ref": "#/$defs/x"}]},
        "list": {"type": "array", "items": {"type": "string", "examples": ["E1"], "const": "C"}},
    },
    "$defs": {"x": {"type": "object", "properties": {"inner": {"description": "ID"}}}},
}


def test_schemas_give_every_prose_string_and_property_name() -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "fd", "parameters": SCHEMA}}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    texts = [s.text for s in request_texts("chat.completions", body) if s.kind == "tool_definition"]
    assert texts == [
        "f", "fd", "T", "D", "mode", "fast", "kaboom", "fast", "nested", "AD", "list", "E1", "C",
        "x", "inner", "ID",
    ]  # fmt: skip


def test_a_redacted_property_name_is_renamed_and_its_schema_kept() -> None:
    schema = {"type": "object", "properties": {"kaboom": {"type": "string", "description": "kaboom too"}}}
    body = {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": schema}]}
    slots = [s for s in request_texts("responses", body) if "kaboom" in s.text]
    changed = replace_texts(body, dict.fromkeys(slots, "[R]"))
    assert changed["tools"][0]["parameters"]["properties"] == {
        "[R]": {"type": "string", "description": "[R]"}
    }


# --- token ids, order, coverage ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "paths"),
    [
        ("completions", {"prompt": [1, 2, 3]}, [("prompt",)]),
        ("completions", {"prompt": [[1, 2], [3]]}, [("prompt", 0), ("prompt", 1)]),
        ("completions", {"prompt": ["text", "more"]}, []),
        ("embeddings", {"input": [[5]]}, [("input", 0)]),
        ("embeddings", {"input": [True, False]}, []),  # booleans are not token ids
        ("chat.completions", {"messages": []}, []),
    ],
)
def test_token_inputs_are_found(endpoint: str, body: dict[str, Any], paths: list[Any]) -> None:
    assert token_inputs(endpoint, body) == paths


def test_texts_come_in_body_order_across_rows() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "first", "name": "n1"},
            {"role": "assistant", "content": "second", "tool_calls": []},
            {"role": "user", "content": [{"type": "text", "text": "third"}]},
        ],
    }
    assert [s.text for s in request_texts("chat.completions", body)] == ["first", "n1", "second", "third"]


def test_every_slot_names_its_registry_row() -> None:
    rows = {row.id for row in endpoints.FIELDS}
    body = {"model": "m", "output": [{"type": "mcp_call", "name": "n", "arguments": "{}", "output": "o"}]}
    assert {s.field for s in response_texts("responses", body)} <= rows


def test_keys_redacted_alike_stay_distinct_so_no_value_is_lost() -> None:
    doc = read_json_text('{"kaboom a": 1, "kaboom b": 2}')
    rebuilt = doc.rebuild(["[R]", "[R]"])
    assert json.loads(rebuilt) == {"[R]": 1, "[R]1": 2}


# --- text places hold text ------------------------------------------------------------------------------


USER = [{"role": "user", "content": "hi"}]
CALL = {"id": "c", "type": "function", "function": {"name": "f", "arguments": ["kaboom"]}}
TOOL = {"type": "function", "function": {"name": "f", "description": ["x"]}}
PARTS = [{"type": "input_text", "text": "x"}]


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        ("chat.completions", {"messages": USER, "tools": [TOOL]}, "tools[0].function.description"),
        ("chat.completions", {"messages": [{**USER[0], "name": {"t": "x"}}]}, "messages[0].name"),
        ("chat.completions", {"messages": [{"role": "assistant", "tool_calls": [CALL]}]},
         "messages[0].tool_calls[0].function.arguments"),
        ("responses", {"input": "x", "prompt": {"id": "p", "variables": {"v": ["kaboom"]}}},
         "prompt.variables.v"),
    ],
)  # fmt: skip
def test_a_container_where_text_belongs_is_refused(endpoint: str, body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        validate_request(endpoint, {"model": "m", **body})
    assert caught.value.param == param and caught.value.code == "invalid_type"


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("completions", {"prompt": [1, 2]}),
        ("completions", {"prompt": [[1], [2]]}),
        ("chat.completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}),
        ("responses", {"input": [{"type": "function_call_output", "call_id": "c", "output": PARTS}]}),
        ("responses", {"input": "x", "prompt": {"id": "p", "variables": {"v": PARTS[0]}}}),
    ],
)
def test_shapes_a_row_reads_into_are_accepted(endpoint: str, body: dict[str, Any]) -> None:
    validate_request(endpoint, {"model": "m", **body})

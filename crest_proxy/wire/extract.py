"""Every string a model will read (requests) and every string it wrote (responses), as ``TextSlot``s.

Images, audio, files and token-id arrays are never returned: they cannot be screened as text and are passed
through untouched. Any content part carrying a string ``text`` is screened whatever its ``type``, so a
vendor part type we have not heard of cannot smuggle text past the guard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from crest_proxy.wire.slots import JsonPath, TextSlot, check_endpoint

Slots = Iterator[TextSlot]


def request_texts(endpoint: str, body: Mapping[str, Any]) -> list[TextSlot]:
    """The texts of a request body that the model will read, in body order."""
    check_endpoint(endpoint)
    if not isinstance(body, Mapping):
        return []
    return list(_REQUEST[endpoint](body))


def response_texts(endpoint: str, body: Mapping[str, Any]) -> list[TextSlot]:
    """The texts of a non-streaming response body that the model wrote, in body order."""
    check_endpoint(endpoint)
    if not isinstance(body, Mapping):
        return []
    return list(_RESPONSE[endpoint](body))


def _string(value: Any, path: JsonPath, role: str | None, kind: str) -> Slots:
    if isinstance(value, str):
        yield TextSlot(path, value, role, kind)


def _items(value: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    # Positions are kept even when an entry is skipped, so paths always point into the original body.
    if isinstance(value, list):
        yield from ((i, item) for i, item in enumerate(value) if isinstance(item, Mapping))


def _role(message: Mapping[str, Any], default: str | None = None) -> str | None:
    role = message.get("role", default)
    return role if isinstance(role, str) else default


# --- content (chat messages, Responses messages, tool outputs) ---------------------------------------


def _content(value: Any, path: JsonPath, role: str | None, kind: str) -> Slots:
    """A string, or an array of parts whose text (and refusal) strings are screened."""
    if isinstance(value, str):
        yield TextSlot(path, value, role, kind)
        return
    for j, part in _items(value):
        yield from _string(part.get("text"), (*path, j, "text"), role, kind)
        yield from _string(part.get("refusal"), (*path, j, "refusal"), role, "refusal")


def _call_arguments(message: Mapping[str, Any], base: JsonPath, role: str | None) -> Slots:
    """Chat ``tool_calls`` (function arguments, custom tool input) and legacy ``function_call``."""
    for k, call in _items(message.get("tool_calls")):
        function, custom = call.get("function"), call.get("custom")
        if isinstance(function, Mapping):
            path = (*base, "tool_calls", k, "function", "arguments")
            yield from _string(function.get("arguments"), path, role, "tool_arguments")
        if isinstance(custom, Mapping):
            path = (*base, "tool_calls", k, "custom", "input")
            yield from _string(custom.get("input"), path, role, "tool_arguments")
    legacy = message.get("function_call")
    if isinstance(legacy, Mapping):
        path = (*base, "function_call", "arguments")
        yield from _string(legacy.get("arguments"), path, role, "tool_arguments")


def _chat_message(message: Mapping[str, Any], base: JsonPath, role: str | None) -> Slots:
    yield from _content(message.get("content"), (*base, "content"), role, "content")
    yield from _string(message.get("refusal"), (*base, "refusal"), role, "refusal")
    # ``reasoning_content`` is not OpenAI's, but LiteLLM and several OpenAI-compatible servers return it
    # (and clients send it back in history); it is model-written text the client sees.
    yield from _string(message.get("reasoning_content"), (*base, "reasoning_content"), role, "reasoning")
    yield from _call_arguments(message, base, role)


# --- requests ---------------------------------------------------------------------------------------


def _chat_request(body: Mapping[str, Any]) -> Slots:
    for i, message in _items(body.get("messages")):
        yield from _chat_message(message, ("messages", i), _role(message))


def _completions_request(body: Mapping[str, Any]) -> Slots:
    prompt = body.get("prompt")
    yield from _string(prompt, ("prompt",), None, "prompt")
    if isinstance(prompt, list):
        for i, text in enumerate(prompt):
            yield from _string(text, ("prompt", i), None, "prompt")


def _embeddings_request(body: Mapping[str, Any]) -> Slots:
    value = body.get("input")
    yield from _string(value, ("input",), None, "input")
    if isinstance(value, list):
        for i, text in enumerate(value):
            yield from _string(text, ("input", i), None, "input")


def _responses_request(body: Mapping[str, Any]) -> Slots:
    # ``instructions`` is documented as a developer message; string ``input`` as a user message.
    yield from _string(body.get("instructions"), ("instructions",), "developer", "instructions")
    yield from _string(body.get("input"), ("input",), "user", "input")
    for i, item in _items(body.get("input")):
        yield from _response_item(item, ("input", i), "content")


# --- Responses API items (request ``input`` and response ``output``) ---------------------------------


def _message_item(item: Mapping[str, Any], base: JsonPath, kind: str) -> Slots:
    yield from _content(item.get("content"), (*base, "content"), _role(item), kind)


def _function_call_item(item: Mapping[str, Any], base: JsonPath, kind: str) -> Slots:
    yield from _string(item.get("arguments"), (*base, "arguments"), "assistant", "tool_arguments")


def _custom_call_item(item: Mapping[str, Any], base: JsonPath, kind: str) -> Slots:
    yield from _string(item.get("input"), (*base, "input"), "assistant", "tool_arguments")


def _call_output_item(item: Mapping[str, Any], base: JsonPath, kind: str) -> Slots:
    yield from _content(item.get("output"), (*base, "output"), "tool", "tool_output")


def _reasoning_item(item: Mapping[str, Any], base: JsonPath, kind: str) -> Slots:
    for j, part in _items(item.get("summary")):
        yield from _string(part.get("text"), (*base, "summary", j, "text"), "assistant", "reasoning")


ItemReader = Callable[[Mapping[str, Any], JsonPath, str], Slots]
_ITEMS: dict[str, ItemReader] = {
    "message": _message_item,
    "function_call": _function_call_item,
    "custom_tool_call": _custom_call_item,
    "function_call_output": _call_output_item,
    "custom_tool_call_output": _call_output_item,
    "reasoning": _reasoning_item,
}


def _response_item(item: Mapping[str, Any], base: JsonPath, kind: str) -> Slots:
    # Easy input messages ({"role": ..., "content": ...}) may leave out ``type``.
    item_type = item.get("type", "message")
    reader = _ITEMS.get(item_type) if isinstance(item_type, str) else None
    if reader is not None:
        yield from reader(item, base, kind)


# --- responses ---------------------------------------------------------------------------------------


def _chat_response(body: Mapping[str, Any]) -> Slots:
    for k, choice in _items(body.get("choices")):
        message = choice.get("message")
        if isinstance(message, Mapping):
            yield from _chat_message(message, ("choices", k, "message"), _role(message, "assistant"))


def _completions_response(body: Mapping[str, Any]) -> Slots:
    for k, choice in _items(body.get("choices")):
        yield from _string(choice.get("text"), ("choices", k, "text"), None, "text")


def _responses_response(body: Mapping[str, Any]) -> Slots:
    for i, item in _items(body.get("output")):
        yield from _response_item(item, ("output", i), "output_text")


def _nothing(body: Mapping[str, Any]) -> Slots:
    # Embedding vectors carry no text.
    yield from ()


_REQUEST: dict[str, Callable[[Mapping[str, Any]], Slots]] = {
    "chat.completions": _chat_request,
    "completions": _completions_request,
    "responses": _responses_request,
    "embeddings": _embeddings_request,
}
_RESPONSE: dict[str, Callable[[Mapping[str, Any]], Slots]] = {
    "chat.completions": _chat_response,
    "completions": _completions_response,
    "responses": _responses_response,
    "embeddings": _nothing,
}

"""Anthropic's Messages API on the wire: where its texts live, and the bodies the proxy writes in its shape.

The fields are the registry's ``ANTHROPIC_FIELDS`` rows (``crest_proxy/endpoints.py``); this module walks
them, and goes further where blocks nest (any block's string ``text`` is screened, whatever its type or
depth), so a block type added to the API cannot carry text past the guard. Plain dicts in, plain dicts
out. Facts from https://docs.anthropic.com/en/api/messages and /en/api/messages-streaming.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from crest_proxy import endpoints
from crest_proxy.errors import BadRequestError
from crest_proxy.wire import structured
from crest_proxy.wire.slots import JsonPath, TextSlot

Slots = Iterator[TextSlot]


MESSAGES = endpoints.ANTHROPIC_ENDPOINTS[0]
COUNT_TOKENS = endpoints.ANTHROPIC_ENDPOINTS[1]

# HTTP status -> Anthropic's error type (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
REFUSAL = "refusal"  # the stop_reason the API ends a refused message with
# A citation quotes its source and names it (a document's or a web page's title): all shown to the user.
CITATION_TEXTS = ("cited_text", "title", "document_title")


# --- texts in -------------------------------------------------------------------------------------------


def request_texts(body: Mapping[str, Any]) -> list[TextSlot]:
    """Every string of a Messages request the model will read, in body order."""
    if not isinstance(body, Mapping):
        return []
    return list(_request(body))


def _request(body: Mapping[str, Any]) -> Slots:
    system = body.get("system")
    yield from _string(system, ("system",), "system", "content")
    yield from _blocks(system, ("system",), "system")
    for i, message in _items(body.get("messages")):
        named = message.get("role")
        role = named if isinstance(named, str) else "user"
        content = message.get("content")
        yield from _string(content, ("messages", i, "content"), role, "content")
        yield from _blocks(content, ("messages", i, "content"), role)
    for i, tool in _items(body.get("tools")):
        yield from _string(tool.get("name"), ("tools", i, "name"), "system", "tool_definition")
        yield from _string(tool.get("description"), ("tools", i, "description"), "system", "tool_definition")
        schema, where = tool.get("input_schema"), ("tools", i, "input_schema")
        yield from _descriptions(schema, where)
        yield from _json_string(schema, where, "system", "tool_definition")  # a schema sent as a JSON string


def _blocks(value: Any, base: JsonPath, role: str) -> Slots:
    """The texts of a list of content blocks; any block carrying a string ``text`` is screened."""
    for j, block in _items(value):
        yield from _block(block, (*base, j), role)


def _block(block: Mapping[str, Any], path: JsonPath, role: str) -> Slots:
    kind = block.get("type")
    yield from _string(block.get("text"), (*path, "text"), role, "content")
    yield from _string(block.get("thinking"), (*path, "thinking"), role, "reasoning")
    if "input" in block:  # tool_use, server_tool_use, mcp_tool_use: the input is JSON the model wrote
        yield from _string(block.get("name"), (*path, "name"), role, "tool_arguments")
        yield from _leaves(block["input"], (*path, "input"), role, "tool_arguments")
    if kind in ("tool_result", "mcp_tool_result"):  # tool output is often JSON: read decoded (red team)
        yield from _json_string(block.get("content"), (*path, "content"), "tool", "tool_output")
        for k, inner in _items(block.get("content")):
            where = (*path, "content", k)
            if inner.get("type") == "text":
                yield from _json_string(inner.get("text"), (*where, "text"), "tool", "tool_output")
            else:
                yield from _block(inner, where, "tool")
    elif isinstance(block.get("content"), list):  # search_result and other containers of blocks
        yield from _blocks(block["content"], (*path, "content"), role)
    source = block.get("source")
    if isinstance(source, Mapping):
        yield from _source(source, (*path, "source"), role)
    for name in ("title", "context"):
        yield from _string(block.get(name), (*path, name), role, "document")
    for k, citation in _items(block.get("citations")):
        for name in CITATION_TEXTS:
            yield from _string(citation.get(name), (*path, "citations", k, name), role, "content")


def media_inputs(body: Mapping[str, Any]) -> list[JsonPath]:
    """Where a request carries images or documents the model reads and the classifier cannot: a block
    whose ``source`` is base64, a URL or a file id (a PDF, an image), at any depth (tool results)."""
    found: list[JsonPath] = []
    for i, message in _items(body.get("messages")):
        _media(message.get("content"), ("messages", i, "content"), found)
    return found


def _media(blocks: Any, path: JsonPath, found: list[JsonPath]) -> None:
    for k, block in _items(blocks):
        source = block.get("source")
        if isinstance(source, Mapping) and source.get("type") not in ("text", "content"):
            found.append((*path, k, "source"))
        if isinstance(block.get("content"), list):
            _media(block["content"], (*path, k, "content"), found)


def _source(source: Mapping[str, Any], path: JsonPath, role: str) -> Slots:
    """A document's text source (``text`` data or ``content`` blocks); base64 and URL ones hold none."""
    if source.get("type") == "text":
        yield from _string(source.get("data"), (*path, "data"), role, "document")
    yield from _string(source.get("content"), (*path, "content"), role, "document")
    yield from _blocks(source.get("content"), (*path, "content"), role)


def _leaves(value: Any, path: JsonPath, role: str, kind: str) -> Slots:
    """Every key and string inside decoded JSON (tool input), with its path; a redacted key is renamed."""
    if isinstance(value, str):
        yield TextSlot(path, value, role, kind)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield TextSlot((*path, str(key)), str(key), role, kind, key=True)
            yield from _leaves(item, (*path, str(key)), role, kind)
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield from _leaves(item, (*path, k), role, kind)


def _descriptions(schema: Any, path: JsonPath) -> Slots:
    """The prose of a tool's input schema: descriptions, titles, enums, defaults and property names."""
    for where, is_key in structured.schema_strings(schema, ()):
        text = where[-1] if is_key else _at(schema, where)
        if isinstance(text, str):
            yield TextSlot((*path, *where), text, "system", "tool_definition", key=is_key)


def _at(root: Any, path: JsonPath) -> Any:
    for step in path:
        root = root[step]
    return root


# --- texts out ------------------------------------------------------------------------------------------


# Answer blocks whose texts are read field by field above; any other block type is read whole.
KNOWN_ANSWER_BLOCKS = ("text", "thinking", "redacted_thinking", "tool_use", "server_tool_use", "mcp_tool_use")
_OPAQUE = frozenset({"type", "id", "tool_use_id", "signature", "data", "encrypted_content", "url"})


def response_texts(body: Mapping[str, Any]) -> list[TextSlot]:
    """Every string of a Messages response the model wrote: text, tool_use input, thinking."""
    if not isinstance(body, Mapping):
        return []
    found: list[TextSlot] = []
    for j, block in _items(body.get("content")):
        path: JsonPath = ("content", j)
        found += _string(block.get("text"), (*path, "text"), "assistant", "content")
        found += _string(block.get("thinking"), (*path, "thinking"), "assistant", "reasoning")
        if "input" in block:  # the tool's name is model-written too (red team)
            found += _string(block.get("name"), (*path, "name"), "assistant", "tool_arguments")
            found += _leaves(block["input"], (*path, "input"), "assistant", "tool_arguments")
        for k, citation in _items(block.get("citations")):
            for name in CITATION_TEXTS:
                found += _string(citation.get(name), (*path, "citations", k, name), "assistant", "content")
        if block.get("type") not in KNOWN_ANSWER_BLOCKS:  # search results, a newer API's blocks (red team)
            found += _values(block, path)
    return found


def _values(value: Any, path: JsonPath) -> Slots:
    """Every string value inside a block of a type read whole (ids and encrypted payloads left out)."""
    if isinstance(value, str):
        yield TextSlot(path, value, "assistant", "content")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in _OPAQUE:
                yield from _values(item, (*path, str(key)))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield from _values(item, (*path, k))


# --- validation -----------------------------------------------------------------------------------------

_MAX_DEPTH = 64  # tool input and schemas are walked recursively; deeper JSON is refused, not half-screened


def validate_request(body: Any, *, count_tokens: bool = False) -> None:
    """Raise ``BadRequestError`` when a text-holding field has a type the extractor would skip."""
    if not isinstance(body, Mapping):
        raise BadRequestError("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequestError("model: Field required (a non-empty string).", param="model")
    max_tokens = body.get("max_tokens")
    valid_max = isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
    if not count_tokens and not valid_max:
        raise BadRequestError("max_tokens: Field required (a positive integer).", param="max_tokens")
    if body.get("stream") not in (None, True, False):
        raise BadRequestError("stream: Input should be a valid boolean.", param="stream")
    _check_blocks(body.get("system"), "system", optional=True)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise BadRequestError("messages: Field required (an array of messages).", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
            raise BadRequestError(f"messages.{i}: expected a message with role user or assistant.")
        _check_blocks(message.get("content"), f"messages.{i}.content", optional=False)
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, Mapping) for t in tools)):
        raise BadRequestError("tools: Input should be a valid list of objects.", param="tools")
    if _depth(body) > _MAX_DEPTH:
        raise BadRequestError(f"The request body nests deeper than {_MAX_DEPTH} levels.")


def _check_blocks(value: Any, name: str, *, optional: bool) -> None:
    if value is None and optional or isinstance(value, str):
        return
    if not isinstance(value, list):
        raise BadRequestError(
            f"{name}: Input should be a valid string or list of content blocks.", param=name
        )
    for j, block in enumerate(value):
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise BadRequestError(f"{name}.{j}: expected a content block with a string type.", param=name)
        content = block.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequestError(f"{name}.{j}.content: expected a string or list of blocks.", param=name)
        if isinstance(content, list):
            _check_blocks(content, f"{name}.{j}.content", optional=False)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iteratively: a hostile body must not hit the recursion limit here)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else ()
        todo.extend((child, level + 1) for child in children if isinstance(child, (Mapping, list)))
    return deepest


# --- bodies we write ------------------------------------------------------------------------------------


def error_body(status: int, message: str, *, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error body for an HTTP status: ``{"type": "error", "error": {"type", "message"}}``."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type(status), "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def error_type(status: int) -> str:
    """Anthropic's error type for ``status`` (other 5xx are ``api_error``, other 4xx invalid requests)."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def refusal_message(request: Mapping[str, Any], text: str, *, request_id: str) -> dict[str, Any]:
    """A whole Message whose only output is ``text``, ended the way the API ends a refusal."""
    model = request.get("model")
    return {
        "id": f"msg_crest_{request_id or uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model if isinstance(model, str) else "",
        "content": [{"type": "text", "text": text}] if text else [],
        "stop_reason": REFUSAL,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }


def block_message(response: Mapping[str, Any], text: str) -> dict[str, Any]:
    """``response`` with every content block replaced by ``text`` and ended as a refusal."""
    content = [{"type": "text", "text": text}] if text else []
    return {**response, "content": content, "stop_reason": REFUSAL, "stop_sequence": None}


def _string(value: Any, path: JsonPath, role: str | None, kind: str) -> Slots:
    if isinstance(value, str):
        yield TextSlot(path, value, role, kind)


def _json_string(value: Any, path: JsonPath, role: str, kind: str) -> Slots:
    """A string that may hold JSON: its keys and string values when it does, else the string itself."""
    if not isinstance(value, str):
        return
    doc = structured.decode(value)
    if doc is None:
        yield TextSlot(path, value, role, kind)
        return
    for inner, text, key in structured.strings(doc):
        yield TextSlot(path, text, role, kind, inner=inner, key=key)


def _items(value: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    # Positions are kept when an entry is skipped, so paths always point into the original body.
    if isinstance(value, list):
        yield from ((i, item) for i, item in enumerate(value) if isinstance(item, Mapping))

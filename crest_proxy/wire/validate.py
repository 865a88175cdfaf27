"""Reject malformed requests before screening, with OpenAI's error messages, codes and ``param`` names.

Checks stay shallow on purpose (the upstream judges the rest), but every place that holds text must have the
type the extractor expects: a string the guard skipped because of a wrong type must not reach the model.
Messages follow OpenAI's wording, e.g. ``Invalid type for 'messages[1].content': expected one of a string
or array of objects, but got an object instead.`` (code ``invalid_type``, param ``messages[1].content``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crest_proxy.errors import BadRequestError
from crest_proxy.wire.extract import BodyReading, read_body
from crest_proxy.wire.slots import check_endpoint, path_param

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_STRING_OR_PARTS = "one of a string or array of objects"
_PROMPT_TYPES = "one of a string, an array of strings, an array of tokens or an array of token arrays"


def validate_request(endpoint: str, body: Any) -> BodyReading:
    """Raise ``BadRequestError`` (with OpenAI's message, code and param) when ``body`` is malformed.

    Returns what the walk of the body's text places found, for the caller to screen without walking again.
    """
    check_endpoint(endpoint)
    if not isinstance(body, Mapping):
        message = f"The request body must be a JSON object, but got {json_type(body)} instead."
        raise BadRequestError(message, param=None, code="invalid_type")
    _check_model(body)
    _check_stream(body)
    _check_n(body)
    _BODY[endpoint](body)
    reading = read_body(endpoint, body)
    _check_text_places(body, reading)
    return reading


def _check_text_places(body: Mapping[str, Any], reading: BodyReading) -> None:
    """Every place the registry reads text from holds text (or what a row reads into): nothing unread."""
    for path in reading.misplaced:
        raise invalid_type(path_param(path), "a string", _value_at(body, path))


def _value_at(body: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        body = body[key]
    return body


# --- OpenAI-style errors -----------------------------------------------------------------------------


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, with its article ("an object", "a string", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    names = ((str, "a string"), (float, "a number"), (Mapping, "an object"), ((list, tuple), "an array"))
    return next((name for kinds, name in names if isinstance(value, kinds)), f"a {type(value).__name__}")


def invalid_type(param: str, expected: str, value: Any) -> BadRequestError:
    """``Invalid type for 'x': expected ..., but got ... instead.``"""
    message = f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead."
    return BadRequestError(message, param=param, code="invalid_type")


def missing(param: str) -> BadRequestError:
    """``Missing required parameter: 'x'.``"""
    message = f"Missing required parameter: '{param}'."
    return BadRequestError(message, param=param, code="missing_required_parameter")


def empty_array(param: str) -> BadRequestError:
    """``Invalid 'x': empty array. ...``"""
    message = (
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead."
    )
    return BadRequestError(message, param=param, code="empty_array")


# --- common fields -----------------------------------------------------------------------------------


def _check_model(body: Mapping[str, Any]) -> None:
    if "model" not in body or body["model"] is None:
        raise missing("model")
    if not isinstance(body["model"], str):
        raise invalid_type("model", "a string", body["model"])
    if not body["model"].strip():
        raise BadRequestError("Invalid 'model': empty string.", param="model", code="invalid_value")


def _check_stream(body: Mapping[str, Any]) -> None:
    # Optional fields may be null: the API treats null as "not given", and some SDKs send it.
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_type("stream", "a boolean", stream)


def _check_n(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int):
        raise invalid_type("n", "an integer", n)
    if n < 1:
        message = f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead."
        raise BadRequestError(message, param="n", code="integer_below_min_value")


# --- chat ----------------------------------------------------------------------------------------------


def _check_chat(body: Mapping[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise empty_array("messages")
    for i, message in enumerate(messages):
        _check_message(message, f"messages[{i}]")


def _check_message(message: Any, param: str) -> None:
    if not isinstance(message, Mapping):
        raise invalid_type(param, "an object", message)
    role = message.get("role")
    if role is None:
        raise missing(f"{param}.role")
    if not isinstance(role, str):
        raise invalid_type(f"{param}.role", "a string", role)
    if role not in ROLES:
        supported = ", ".join(f"'{r}'" for r in ROLES[:-1]) + f", and '{ROLES[-1]}'"
        message_text = f"Invalid value: {role!r}. Supported values are: {supported}."
        raise BadRequestError(message_text, param=f"{param}.role", code="invalid_value")
    # Assistant and legacy function messages may carry no content (a tool call instead).
    optional = role in ("assistant", "function")
    _check_content(message.get("content"), f"{param}.content", optional=optional)
    _check_optional_string(message, "refusal", param)
    _check_optional_string(message, "reasoning_content", param)
    _check_optional_string(message, "reasoning", param)
    _check_tool_calls(message, param)


def _check_content(content: Any, param: str, *, optional: bool) -> None:
    if content is None:
        if not optional:
            raise missing(param)
        return
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid_type(param, _STRING_OR_PARTS, content)
    if not content:
        raise empty_array(param)
    for j, part in enumerate(content):
        _check_part(part, f"{param}[{j}]")


def _check_part(part: Any, param: str) -> None:
    if not isinstance(part, Mapping):
        raise invalid_type(param, "an object", part)
    if "type" not in part:
        raise missing(f"{param}.type")
    if not isinstance(part["type"], str):
        raise invalid_type(f"{param}.type", "a string", part["type"])
    _check_optional_string(part, "text", param)
    _check_optional_string(part, "refusal", param)
    if part["type"] == "text" and "text" not in part:
        raise missing(f"{param}.text")


def _check_optional_string(holder: Mapping[str, Any], key: str, param: str) -> None:
    value = holder.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid_type(f"{param}.{key}", "a string", value)


def _check_tool_calls(message: Mapping[str, Any], param: str) -> None:
    calls = message.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise invalid_type(f"{param}.tool_calls", "an array", calls)
    for k, call in enumerate(calls or []):
        call_param = f"{param}.tool_calls[{k}]"
        if not isinstance(call, Mapping):
            raise invalid_type(call_param, "an object", call)
        _check_call_object(call, "function", "arguments", call_param)
        _check_call_object(call, "custom", "input", call_param)
    _check_call_object(message, "function_call", "arguments", param)


def _check_call_object(holder: Mapping[str, Any], key: str, field: str, param: str) -> None:
    value = holder.get(key)
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise invalid_type(f"{param}.{key}", "an object", value)
    _check_optional_string(value, field, f"{param}.{key}")


# --- completions, embeddings, responses --------------------------------------------------------------


def _is_tokens(value: Any) -> bool:
    """A non-empty array of token ids (these cannot be screened as text, but are well-formed)."""
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _check_completions(body: Mapping[str, Any]) -> None:
    if "prompt" not in body:
        raise missing("prompt")
    prompt = body["prompt"]
    # The spec allows a null prompt (the model then starts a new document).
    if prompt is None or isinstance(prompt, str) or _is_tokens(prompt):
        return
    if isinstance(prompt, list) and (all(isinstance(p, str) for p in prompt) or all(map(_is_tokens, prompt))):
        return
    raise invalid_type("prompt", _PROMPT_TYPES, prompt)


def _check_embeddings(body: Mapping[str, Any]) -> None:
    value = body.get("input")
    if value is None:
        raise missing("input")
    if isinstance(value, list) and not value:
        raise empty_array("input")
    if isinstance(value, str) or _is_tokens(value):
        return
    if isinstance(value, list) and (all(isinstance(v, str) for v in value) or all(map(_is_tokens, value))):
        return
    raise invalid_type("input", _PROMPT_TYPES, value)


def _check_responses(body: Mapping[str, Any]) -> None:
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid_type("instructions", "a string", instructions)
    value = body.get("input")
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list):
        raise invalid_type("input", "one of a string or array of input items", value)
    for i, item in enumerate(value):
        _check_input_item(item, f"input[{i}]")


def _check_input_item(item: Any, param: str) -> None:
    if not isinstance(item, Mapping):
        raise invalid_type(param, "an object", item)
    item_type = item.get("type", "message")  # easy input messages may leave out ``type``
    if not isinstance(item_type, str):
        raise invalid_type(f"{param}.type", "a string", item_type)
    if item_type == "message":
        _check_content(item.get("content"), f"{param}.content", optional=False)
    elif item_type in ("function_call_output", "custom_tool_call_output"):
        _check_content(item.get("output"), f"{param}.output", optional=False)
    elif item_type in _CALL_FIELDS:
        _check_optional_string(item, _CALL_FIELDS[item_type], param)


# The string a Responses tool-call item carries (the extractor screens it).
_CALL_FIELDS = {"function_call": "arguments", "custom_tool_call": "input"}


_BODY: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "chat.completions": _check_chat,
    "completions": _check_completions,
    "responses": _check_responses,
    "embeddings": _check_embeddings,
}

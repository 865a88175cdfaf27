"""The OpenAI wire format: texts out of and back into request/response bodies, validation, bodies we write.

Plain dicts in, plain dicts out: nothing here imports starlette, httpx or torch.
"""

from __future__ import annotations

from crest_proxy.wire.bodies import block_response, chat_chunk, error_body, error_body_for, refusal_response
from crest_proxy.wire.extract import (
    BodyReading,
    field_texts,
    read_body,
    request_texts,
    response_texts,
    token_inputs,
)
from crest_proxy.wire.slots import (
    ENDPOINTS,
    Endpoint,
    JsonPath,
    TextSlot,
    choice_index,
    path_param,
    replace_texts,
)
from crest_proxy.wire.validate import validate_request

__all__ = [
    "ENDPOINTS",
    "BodyReading",
    "Endpoint",
    "JsonPath",
    "TextSlot",
    "block_response",
    "chat_chunk",
    "choice_index",
    "error_body",
    "error_body_for",
    "field_texts",
    "path_param",
    "read_body",
    "refusal_response",
    "replace_texts",
    "request_texts",
    "response_texts",
    "token_inputs",
    "validate_request",
]

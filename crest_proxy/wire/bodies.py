"""Bodies the proxy writes itself: error bodies, refusals for blocked prompts, blocked answers, chat chunks.

Shapes follow OpenAI's OpenAPI description (CreateChatCompletionResponse, CreateCompletionResponse,
Response, CreateChatCompletionStreamResponse, ErrorResponse); tests validate them against it and against
the ``openai`` SDK's types.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from crest_proxy.errors import ProxyError
from crest_proxy.wire.slots import check_endpoint

CONTENT_FILTER = "content_filter"


def error_body(message: str, *, type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_body_for(exc: ProxyError) -> dict[str, Any]:
    """The error body of a ``ProxyError``."""
    return error_body(exc.message, type=exc.error_type, code=exc.code, param=exc.param)


# --- refusals (inbound block, block.style = refusal) -------------------------------------------------


def refusal_response(
    endpoint: str, request: Mapping[str, Any], message: str, *, request_id: str, created: int | None = None
) -> dict[str, Any]:
    """A complete non-streaming response of ``endpoint`` whose only output is ``message``."""
    check_endpoint(endpoint)
    if endpoint == "embeddings":
        raise ValueError("embeddings has no refusal response; answer with an error body instead")
    when = int(time.time()) if created is None else created
    return _REFUSALS[endpoint](request, message, request_id, when)


def _model(request: Mapping[str, Any]) -> str:
    model = request.get("model")
    return model if isinstance(model, str) else ""


def _n(request: Mapping[str, Any]) -> int:
    n = request.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _zero_usage() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _chat_refusal(request: Mapping[str, Any], message: str, request_id: str, created: int) -> dict[str, Any]:
    # One choice per requested completion (``n``), so clients that index choices find them all.
    return {
        "id": f"chatcmpl-crest-{request_id}",
        "object": "chat.completion",
        "created": created,
        "model": _model(request),
        "choices": [_chat_choice(k, message) for k in range(_n(request))],
        "usage": _zero_usage(),
    }


def _chat_choice(index: int, message: str) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": message, "refusal": None},
        "logprobs": None,
        "finish_reason": CONTENT_FILTER,
    }


def _prompt_count(request: Mapping[str, Any]) -> int:
    # The API answers n choices per prompt; a list of strings or of token arrays is several prompts.
    prompt = request.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        return len(prompt)
    return 1


def _completion_refusal(
    request: Mapping[str, Any], message: str, request_id: str, created: int
) -> dict[str, Any]:
    count = _prompt_count(request) * _n(request)
    return {
        "id": f"cmpl-crest-{request_id}",
        "object": "text_completion",
        "created": created,
        "model": _model(request),
        "choices": [_completion_choice(k, message) for k in range(count)],
        "usage": _zero_usage(),
    }


def _completion_choice(index: int, message: str) -> dict[str, Any]:
    return {"index": index, "text": message, "logprobs": None, "finish_reason": CONTENT_FILTER}


def _responses_refusal(
    request: Mapping[str, Any], message: str, request_id: str, created: int
) -> dict[str, Any]:
    return {
        "id": f"resp_crest_{request_id}",
        "object": "response",
        "created_at": created,
        "status": "incomplete",
        "error": None,
        "incomplete_details": {"reason": CONTENT_FILTER},
        # Not echoed: the blocked text may be in the instructions, and the client already has them.
        "instructions": None,
        "model": _model(request),
        "output": [_output_message(f"msg_crest_{request_id}", message)],
        **_echoed_settings(request),
        "usage": _zero_response_usage(),
    }


def _echoed_settings(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request settings a Response object repeats (the schema requires them)."""

    def pick(key: str, types: type | tuple[type, ...], default: Any) -> Any:
        value = request.get(key)
        return value if isinstance(value, types) and not isinstance(value, bool) else default

    parallel = request.get("parallel_tool_calls")
    return {
        "max_output_tokens": pick("max_output_tokens", int, None),
        "metadata": pick("metadata", dict, {}),
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
        "previous_response_id": pick("previous_response_id", str, None),
        "temperature": pick("temperature", (int, float), None),
        "tool_choice": pick("tool_choice", (str, dict), "auto"),
        "tools": pick("tools", list, []),
        "top_p": pick("top_p", (int, float), None),
    }


def _output_message(item_id: str, message: str) -> dict[str, Any]:
    text = {"type": "output_text", "text": message, "annotations": [], "logprobs": []}
    return {"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [text]}


def _zero_response_usage() -> dict[str, Any]:
    return {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }


# --- blocked answers (outbound block of a non-streaming response) ------------------------------------


def block_response(
    endpoint: str,
    response: Mapping[str, Any],
    message: str,
    *,
    choice_indexes: Collection[int] | None = None,
) -> dict[str, Any]:
    """``response`` with the chosen (default: all) choices' output replaced by ``message``."""
    check_endpoint(endpoint)
    if endpoint == "embeddings":
        raise ValueError("embeddings responses carry no text to block")
    body = copy.deepcopy(dict(response))
    return _BLOCKS[endpoint](body, message, choice_indexes)


def _replace_choices(
    body: dict[str, Any],
    chosen: Collection[int] | None,
    build: Callable[[int, str], dict[str, Any]],
    message: str,
) -> dict[str, Any]:
    # A choice is rebuilt rather than edited: annotations, logprobs, audio and vendor fields (e.g.
    # reasoning_content) all carry or point into the blocked text.
    choices = body.get("choices")
    if isinstance(choices, list):
        for k, choice in enumerate(choices):
            if chosen is None or k in chosen:
                index = choice.get("index", k) if isinstance(choice, Mapping) else k
                choices[k] = build(index, message)
    return body


def _block_chat(body: dict[str, Any], message: str, chosen: Collection[int] | None) -> dict[str, Any]:
    return _replace_choices(body, chosen, _chat_choice, message)


def _block_completion(body: dict[str, Any], message: str, chosen: Collection[int] | None) -> dict[str, Any]:
    return _replace_choices(body, chosen, _completion_choice, message)


def _block_responses(body: dict[str, Any], message: str, chosen: Collection[int] | None) -> dict[str, Any]:
    # A Response has no choices: the whole output goes.
    body["output"] = [_output_message(f"msg_crest_{body.get('id', '')}", message)]
    body["status"] = "incomplete"
    body["incomplete_details"] = {"reason": CONTENT_FILTER}
    if "output_text" in body:  # SDK-only convenience field, present when a client re-serialises a Response
        body["output_text"] = message
    return body


# --- streaming ---------------------------------------------------------------------------------------


def chat_chunk(
    template: Mapping[str, Any],
    index: int,
    *,
    content: str | None = None,
    finish_reason: str | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice, carrying the id, created and model of ``template``."""
    chunk: dict[str, Any] = {"id": template.get("id"), "object": "chat.completion.chunk"}
    for key in ("created", "model", "system_fingerprint", "service_tier"):
        if template.get(key) is not None:  # the schema types these as non-null strings/integers
            chunk[key] = template[key]
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    chunk["choices"] = [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return chunk


_REFUSALS: dict[str, Callable[[Mapping[str, Any], str, str, int], dict[str, Any]]] = {
    "chat.completions": _chat_refusal,
    "completions": _completion_refusal,
    "responses": _responses_refusal,
}
_BLOCKS: dict[str, Callable[[dict[str, Any], str, Collection[int] | None], dict[str, Any]]] = {
    "chat.completions": _block_chat,
    "completions": _block_completion,
    "responses": _block_responses,
}

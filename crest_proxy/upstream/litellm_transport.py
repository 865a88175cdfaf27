"""LiteLLM as an upstream: an httpx transport that answers OpenAI-format requests by calling ``litellm``.

The proxy talks to every upstream through httpx, so a tenant with ``provider: litellm`` gets a client whose
transport is ``LiteLLMTransport``: screening, audit and streaming code stay unchanged, and Anthropic,
Bedrock, Vertex, Azure … answer in OpenAI's wire format (JSON, or SSE for ``stream: true``). Anthropic's
Messages API (``/v1/messages``) goes through ``litellm.anthropic_messages`` and answers in Anthropic's format.
litellm is imported on first use, off the event loop (it takes seconds), never at import time.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from crest_proxy import wire
from crest_proxy.policy.model import LiteLLMModel, LiteLLMUpstream

# OpenAI request parameters forwarded per endpoint. Anything else is refused: litellm also reads routing
# and credential keywords (api_base, api_key, aws_*, extra_headers …) that a client must never set.
_PARAMS: dict[str, frozenset[str]] = {
    "chat.completions": frozenset(
        {
            "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
            "max_completion_tokens", "max_tokens", "modalities", "n", "parallel_tool_calls", "prediction",
            "presence_penalty", "prompt_cache_key", "reasoning_effort", "response_format",
            "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options",
            "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
            "web_search_options",
        }
    ),
    "completions": frozenset(
        {
            "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
            "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p",
            "user",
        }
    ),
    "embeddings": frozenset({"input", "dimensions", "encoding_format", "user"}),
    # Anthropic's Messages API (POST /v1/messages): litellm translates it for any provider.
    "messages": frozenset(
        {
            "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
            "thinking", "tool_choice", "tools", "top_k", "top_p", "container", "service_tier",
        }
    ),
}  # fmt: skip
_FUNCTIONS = {
    "chat.completions": "acompletion",
    "completions": "atext_completion",
    "embeddings": "aembedding",
    "messages": "anthropic_messages",
}
_PATHS = {
    "chat/completions": "chat.completions",
    "completions": "completions",
    "embeddings": "embeddings",
    "messages": "messages",
}
_STREAMABLE = frozenset({"chat.completions", "completions", "messages"})


class Refused(Exception):
    """A request the transport answers itself with an OpenAI error (bad parameter, unknown model …)."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.response = _error(status, message, type="invalid_request_error", code=code, param=param)


@dataclass(frozen=True)
class LiteLLMCall:
    """One litellm call planned from an OpenAI request: the function to await and its keyword arguments."""

    function: str
    kwargs: dict[str, Any]
    stream: bool
    endpoint: str


def plan_call(
    upstream: LiteLLMUpstream, secrets: Mapping[str, Mapping[str, str]], endpoint: str, body: Any
) -> LiteLLMCall:
    """The litellm call for an OpenAI request body (pure); raises ``Refused`` for what cannot be served."""
    if not isinstance(body, dict):
        raise Refused(400, "The request body must be a JSON object.", code="invalid_request")
    name = body.get("model")
    target = upstream.aliases.get(name, name) if isinstance(name, str) else ""
    model = upstream.models.get(target)
    if model is None:
        message = f"The model '{name}' does not exist or you do not have access to it."
        raise Refused(404, message, code="model_not_found", param="model")
    unknown = sorted(set(body) - _PARAMS[endpoint] - {"model"})
    if unknown:
        message = f"Unrecognized request argument supplied: {unknown[0]} (litellm upstreams take OpenAI's)."
        raise Refused(400, message, code="unsupported_parameter", param=unknown[0])
    stream = body.get("stream") is True
    if stream and endpoint not in _STREAMABLE:
        raise Refused(400, f"stream is not supported on {endpoint}.", code="unsupported_parameter")
    kwargs = {k: v for k, v in body.items() if k != "model"}
    kwargs.update(_model_kwargs(model, secrets.get(target, {})))
    t = upstream.timeout
    kwargs["timeout"] = httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)
    return LiteLLMCall(_FUNCTIONS[endpoint], kwargs, stream, endpoint)


def _model_kwargs(model: LiteLLMModel, resolved: Mapping[str, str]) -> dict[str, Any]:
    """litellm keywords of one mapped model, ``env:`` references replaced by their resolved values."""
    kwargs: dict[str, Any] = {"max_retries": 0}  # the client decides about retries, as with any upstream
    kwargs.update(model.params)
    kwargs.update({key.removeprefix("params."): resolved[key] for key in model.env_refs() if key in resolved})
    optional = {"api_base": model.api_base, "api_version": model.api_version}
    optional["mock_response"] = model.mock_response
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    kwargs["model"] = model.model
    return kwargs


async def load_litellm() -> Any:
    """The ``litellm`` module, imported once per process off the event loop, with no network at import."""
    module: Any = sys.modules.get("litellm")
    if module is None:
        # Without this litellm downloads its model cost map from GitHub when imported.
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        module = await asyncio.to_thread(importlib.import_module, "litellm")
        module.suppress_debug_info = True  # no "Give Feedback" banners on stdout for every provider error
    return module


class LiteLLMTransport(httpx.AsyncBaseTransport):
    """An httpx transport serving one tenant's LiteLLM model map."""

    def __init__(self, upstream: LiteLLMUpstream, secrets: Mapping[str, Mapping[str, str]]) -> None:
        self._upstream = upstream
        self._secrets = secrets

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer one OpenAI-format request through litellm."""
        path = request.url.path.removeprefix("/v1/")
        if path == "models" and request.method == "GET":
            return _json(200, _model_list(self._upstream))
        endpoint = _PATHS.get(path) if request.method == "POST" else None
        try:
            if endpoint is None:
                raise Refused(404, f"{request.method} /v1/{path} is not served by the litellm upstream.",
                               code="unknown_url")  # fmt: skip
            body = _parse(await request.aread())
            call = plan_call(self._upstream, self._secrets, endpoint, body)
        except Refused as refused:
            return refused.response
        litellm = await load_litellm()
        try:
            result = await getattr(litellm, call.function)(**call.kwargs)
            if call.stream:
                return await _stream_response(result, call.endpoint, request)
        except Exception as exc:  # every provider failure becomes an OpenAI error, never a 500 of ours
            return _failure(litellm, exc, request, self._secrets)
        return _json(200, _dump(result, call.endpoint))

    async def aclose(self) -> None:
        """Close litellm's cached provider connections (they belong to this event loop)."""
        litellm = sys.modules.get("litellm")
        if litellm is not None:
            # Otherwise aiohttp sessions outlive the loop and warn (or break) when the next loop reuses them.
            await litellm.close_litellm_async_clients()


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(400, "The request body is not valid JSON.", code="invalid_json") from None


def _model_list(upstream: LiteLLMUpstream) -> dict[str, Any]:
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "litellm"} for name in upstream.models]
    return {"object": "list", "data": data}


def _dump(result: Any, endpoint: str, *, chunk: bool = False) -> dict[str, Any]:
    """An OpenAI-format body from a litellm response object (a whole response, or one streamed chunk)."""
    # Chunks drop litellm's null placeholders (OpenAI sends deltas sparse); whole bodies keep them, as
    # OpenAI's schema requires keys such as ``message.content`` even when null.
    if isinstance(result, dict):  # Messages API answers come back as Anthropic-shaped dicts
        return result
    data: dict[str, Any] = result.model_dump(exclude_none=chunk)
    if endpoint == "completions":
        for choice in data.get("choices") or []:
            choice.setdefault("text", "")  # litellm's last text chunk omits it; OpenAI's schema requires it
    return data


async def _stream_response(stream: Any, endpoint: str, request: httpx.Request) -> httpx.Response:
    """A 200 SSE response; the first chunk is awaited here so early failures still get an error status."""
    chunks = aiter(stream)
    try:
        first = [await anext(chunks)]
    except StopAsyncIteration:
        first = []
    body = _SseStream(first, chunks, endpoint, request, stream)
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)


class _SseStream(httpx.AsyncByteStream):
    """litellm's streamed chunks as OpenAI server-sent events, ending with ``data: [DONE]``."""

    def __init__(
        self, first: list[Any], rest: AsyncIterator[Any], endpoint: str, request: httpx.Request, source: Any
    ) -> None:
        self._first, self._rest, self._endpoint = first, rest, endpoint
        self._request, self._source = request, source

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._first:
            yield self._frame(chunk)
        try:
            async for chunk in self._rest:
                yield self._frame(chunk)
        except Exception as exc:
            # Headers are sent: a failure now reads, to the proxy, like a dropped connection.
            raise httpx.ReadError(
                f"litellm stream failed ({type(exc).__name__})", request=self._request
            ) from None
        if self._endpoint != "messages":  # Anthropic streams end with their own message_stop event
            yield b"data: [DONE]\n\n"

    def _frame(self, chunk: Any) -> bytes:
        """One SSE frame; litellm streams Messages API answers as Anthropic's SSE bytes already."""
        return chunk if isinstance(chunk, bytes) else _event(_dump(chunk, self._endpoint, chunk=True))

    async def aclose(self) -> None:
        """Stop litellm's stream (closes the provider connection when the client went away)."""
        close = getattr(self._source, "aclose", None)
        if close is not None:
            await close()


def _event(data: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def _json(status: int, body: Mapping[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"x-crest-upstream": "litellm"})


def _error(status: int, message: str, *, type: str, code: str, param: str | None = None) -> httpx.Response:
    return _json(status, wire.error_body(message, type=type, code=code, param=param))


# litellm exception class name -> (status, OpenAI error type, code); the first match in the MRO wins.
_STATUSES: dict[str, tuple[int, str, str]] = {
    "AuthenticationError": (401, "invalid_request_error", "upstream_authentication_failed"),
    "PermissionDeniedError": (403, "invalid_request_error", "upstream_permission_denied"),
    "NotFoundError": (404, "invalid_request_error", "model_not_found"),
    "RateLimitError": (429, "rate_limit_error", "upstream_rate_limited"),
    "ContextWindowExceededError": (400, "invalid_request_error", "context_length_exceeded"),
    "ContentPolicyViolationError": (400, "invalid_request_error", "upstream_content_policy"),
    "UnsupportedParamsError": (400, "invalid_request_error", "unsupported_parameter"),
    "BadRequestError": (400, "invalid_request_error", "invalid_request"),
    "UnprocessableEntityError": (422, "invalid_request_error", "invalid_request"),
    "ServiceUnavailableError": (503, "server_error", "upstream_unavailable"),
}
_MAX_MESSAGE = 1000


def _failure(
    litellm: Any, exc: Exception, request: httpx.Request, secrets: Mapping[str, Mapping[str, str]]
) -> httpx.Response:
    """The OpenAI error for a failed litellm call; timeouts and unreachable providers raise like httpx."""
    if isinstance(exc, litellm.Timeout):
        raise httpx.ReadTimeout("litellm: the provider did not answer in time", request=request) from None
    if isinstance(exc, litellm.APIConnectionError):
        raise httpx.ConnectError("litellm: the provider could not be reached", request=request) from None
    names = [cls.__name__ for cls in type(exc).__mro__]
    status, kind, code = next(
        (_STATUSES[n] for n in names if n in _STATUSES), (502, "api_error", "upstream_error")
    )
    if status == 401:
        # Provider 401 messages may echo part of the key (OpenAI does): say nothing of it.
        message = "The provider rejected the credentials configured for this model."
    else:
        message = _scrub(str(exc) or type(exc).__name__, secrets)[:_MAX_MESSAGE]
    return _error(status, message, type=kind, code=code)


def _scrub(text: str, secrets: Mapping[str, Mapping[str, str]]) -> str:
    """``text`` with every resolved secret value masked."""
    for values in secrets.values():
        for value in values.values():
            text = text.replace(value, "***")
    return text

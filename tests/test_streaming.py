"""Streamed chat completions end to end: the real OpenAI SDK -> crest-proxy -> a fake streaming upstream."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from httpx_sse import connect_sse

from crest_proxy.classifier import CrestClassifier
from crest_proxy.upstream.aiohttp_transport import AiohttpTransport
from crest_proxy.upstream.pool import UPSTREAM_LIMITS
from tests.openapi_schemas import assert_valid
from tests.support.harness import Harness, key_of, running_proxy
from tests.support.servers import serve
from tests.support.waiting import wait_for

MESSAGES = [{"role": "user", "content": "tell me something"}]
SAFE_PIECES = ["The sun", " is warm", " today. ", "We walked to", " the harbour", ", then had tea! ", "Bye."]
UNSAFE = ["Here is", " a kab", "oom rec", "ipe. "]


class Rechunked(httpx.AsyncByteStream):
    """An upstream body re-cut into pieces of ``size`` bytes (every UTF-8 character split across reads)."""

    def __init__(self, inner: httpx.AsyncByteStream, size: int) -> None:
        self._inner, self._size = inner, size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            for i in range(0, len(chunk), self._size):
                yield chunk[i : i + self._size]

    async def aclose(self) -> None:
        await self._inner.aclose()


class RechunkingTransport(httpx.AsyncBaseTransport):
    """The proxy's own upstream transport, with response bodies re-cut when ``chunk_size`` is set."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport(limits=UPSTREAM_LIMITS)
        self.chunk_size: int | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.chunk_size is None:
            return response
        assert isinstance(response.stream, httpx.AsyncByteStream)
        stream = Rechunked(response.stream, self.chunk_size)
        return httpx.Response(response.status_code, headers=response.headers, stream=stream)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def transport() -> RechunkingTransport:
    return RechunkingTransport()


@pytest.fixture(scope="module")
def harness(
    tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier, transport: RechunkingTransport
) -> Iterator[Harness]:
    with running_proxy(tmp_path_factory.mktemp("proxy"), classifier, transport=transport) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset(harness: Harness, transport: RechunkingTransport) -> None:
    fake = harness.upstream
    fake.status, fake.error, fake.raw_body, fake.stream_delay_s = 200, None, None, 0.0
    fake.stream_pieces = SAFE_PIECES
    fake.stream_tool_pieces = fake.stream_break = None
    fake.stream_choice_pieces = {}  # the scripted stream: schema-valid chunks with a system_fingerprint
    fake.stream_break_after, fake.stream_logprobs = 0, False
    fake.received.clear()
    transport.chunk_size = None


def stream_chat(harness: Harness, tenant: str = "blocker", **kwargs: Any) -> list[Any]:
    """Every chunk the sync SDK yields for a streamed chat completion."""
    with harness.client(tenant) as client:
        return list(
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **kwargs)
        )


def raw_stream(
    harness: Harness, body: dict[str, Any], tenant: str = "blocker"
) -> tuple[httpx.Response, list[str]]:
    """The proxy's response and the data of every SSE event it sent."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, **body}
    headers = {"authorization": f"Bearer {key_of(tenant)}"}
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(
            client, "POST", f"{harness.proxy_url}/v1/chat/completions", json=body, headers=headers
        ) as source,
    ):
        return source.response, [event.data for event in source.iter_sse()]


def chunks_of(datas: list[str]) -> list[dict[str, Any]]:
    assert datas[-1] == "[DONE]"
    return [json.loads(d) for d in datas[:-1]]


def text_of(chunks: list[Any], index: int = 0) -> str:
    return "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == index
    )


def finish_of(chunks: list[Any], index: int = 0) -> list[str]:
    return [
        c.choices[0].finish_reason
        for c in chunks
        if c.choices and c.choices[0].index == index and c.choices[0].finish_reason
    ]


def outbound(harness: Harness, request_id: str) -> dict[str, Any]:
    (record,) = [r for r in harness.records_for(request_id) if r["direction"] == "outbound"]
    return record


def test_safe_stream_matches_a_direct_stream(harness: Harness) -> None:
    response, datas = raw_stream(harness, {"stream_options": {"include_usage": True}})
    proxied = chunks_of(datas)
    with serve(harness.upstream.app()) as url, openai.OpenAI(base_url=f"{url}/v1", api_key="x") as sdk:
        direct = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        expected = [c.model_dump(exclude_unset=True) for c in direct]
    for chunk in proxied:
        assert_valid(chunk, "CreateChatCompletionStreamResponse")

    def content(chunks: list[dict[str, Any]]) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])

    def fields(chunks: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        keys = ("id", "object", "created", "model", "system_fingerprint")
        return {tuple(c.get(k) for k in keys) for c in chunks}

    assert content(proxied) == content(expected) == "".join(SAFE_PIECES)
    assert fields(proxied) == fields(expected)
    assert proxied[0] == expected[0]  # the role chunk, untouched
    assert proxied[-2:] == expected[-2:]  # the finish chunk and the usage chunk
    record = outbound(harness, response.headers["x-request-id"])
    assert record["action"] == "allow" and record["extra"]["stream"] is True
    assert record["extra"]["stream_windows"] == 3 and record["upstream_status"] == 200


async def test_async_sdk_streams_safe_text(harness: Harness) -> None:
    client = harness.async_client()
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert text_of(chunks) == "".join(SAFE_PIECES) and finish_of(chunks) == ["stop"]
    await client.close()


# --- redact and block --------------------------------------------------------------------------------------


def test_unsafe_sentence_is_redacted_mid_stream_and_the_rest_flows(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["First sentence", " is fine. ", *UNSAFE, "Third", " is fine."]
    with harness.client("redactor") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        chunks = list(raw.parse())
    assert text_of(chunks) == "First sentence is fine. [gone] Third is fine."
    assert [text_of([c]) for c in chunks if text_of([c])] == [
        "First sentence is fine. ",
        "[gone] ",
        "Third is fine.",
    ]
    assert finish_of(chunks) == ["stop"]
    record = outbound(harness, raw.headers["x-request-id"])
    assert record["action"] == "redact" and record["score"] > 0.99
    assert record["content"] == "First sentence is fine. Here is a kaboom recipe. Third is fine."
    assert record["extra"]["max_holdback_chars"] >= len("Here is a kaboom recipe. ") - len("ipe. ")


async def test_async_sdk_sees_the_redaction(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["Fine. ", *UNSAFE, "Also fine."]
    client = harness.async_client("redactor")
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert text_of([chunk async for chunk in stream]) == "Fine. [gone] Also fine."
    await client.close()


def test_block_mid_stream_ends_with_content_filter_and_closes_the_upstream(harness: Harness) -> None:
    fake = harness.upstream
    fake.stream_pieces = ["A safe start. ", *UNSAFE, *(["More words follow. "] * 200)]
    fake.stream_delay_s = 0.002
    closed, finished = fake.streams_closed, fake.streams_finished
    response, datas = raw_stream(harness, {})
    assert "kab" not in "".join(datas) and "Here is" not in "".join(datas)
    chunks = chunks_of(datas)
    for chunk in chunks:
        assert_valid(chunk, "CreateChatCompletionStreamResponse")
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "A safe start. "
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    wait_for(lambda: fake.streams_closed == closed + 1)
    assert fake.streams_finished == finished
    record = outbound(harness, response.headers["x-request-id"])
    assert record["action"] == "block" and record["extra"]["outcome"] == "blocked"
    assert record["upstream_status"] == 200


def test_refusal_style_puts_the_message_in_the_final_chunk(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["Okay. ", *UNSAFE]
    chunks = stream_chat(harness, "refuser")
    assert text_of(chunks) == "Okay. I can't help with that."
    assert finish_of(chunks) == ["content_filter"]


@pytest.mark.parametrize("sentence", ["これは kaboom です。", "Look 🧨 kaboom 👍🏽 now! "])
def test_splits_at_every_character_and_byte_still_catch_the_sentence(
    harness: Harness, transport: RechunkingTransport, sentence: str
) -> None:
    transport.chunk_size = 1  # every multi-byte character also arrives split across network reads
    safe = sentence.replace("kaboom", "teacup")

    def script(text: str, i: int | None) -> list[str]:
        middle = list(text) if i is None else [text[:i], text[i:]]  # None: one character per delta
        return ["Safe intro. ", *middle, "Safe outro."]

    for i in [*range(1, len(sentence)), None]:
        harness.upstream.stream_pieces = script(sentence, i)
        chunks = stream_chat(harness)
        assert (text_of(chunks), finish_of(chunks)) == ("Safe intro. ", ["content_filter"]), i
        harness.upstream.stream_pieces = script(safe, i)
        assert text_of(stream_chat(harness)) == f"Safe intro. {safe}Safe outro.", i


# --- tool calls, usage, n ----------------------------------------------------------------------------------


def test_tool_call_argument_deltas_are_screened(harness: Harness) -> None:
    fake = harness.upstream
    fake.stream_tool_pieces = ['{"query": ', '"weather in', ' Paris"}']
    chunks = stream_chat(harness)
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert calls[0][0].id == "call_1" and calls[0][0].function.name == "lookup"
    assert "".join(call[0].function.arguments or "" for call in calls) == '{"query": "weather in Paris"}'
    assert finish_of(chunks) == ["tool_calls"]
    fake.stream_tool_pieces = ['{"query": ', '"zar', 'quon recipe"}']
    _, datas = raw_stream(harness, {})
    assert "zar" not in "".join(datas)
    chunks = chunks_of(datas)
    for chunk in chunks:
        assert_valid(chunk, "CreateChatCompletionStreamResponse")
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"


def test_usage_chunk_passes_through(harness: Harness) -> None:
    chunks = stream_chat(harness, stream_options={"include_usage": True})
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(SAFE_PIECES)


def test_logprobs_are_held_with_their_text_and_dropped_when_redacted(harness: Harness) -> None:
    harness.upstream.stream_logprobs = True
    _, datas = raw_stream(harness, {"logprobs": True})
    text = tokens = ""
    for chunk in chunks_of(datas):
        assert_valid(chunk, "CreateChatCompletionStreamResponse")
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
            tokens += "".join(t["token"] for t in (choice["logprobs"] or {}).get("content") or [])
            assert text.startswith(tokens)  # no logprob describes text the client has not got yet
    assert text == tokens == "".join(SAFE_PIECES)
    harness.upstream.stream_pieces = ["Fine. ", *UNSAFE]
    _, datas = raw_stream(harness, {"logprobs": True}, tenant="redactor")
    assert "kab" not in "".join(datas) and "[gone]" in "".join(datas)


@pytest.mark.parametrize(("tenant", "second"), [("blocker", "Fine. "), ("redactor", "Fine. [gone] ")])
def test_choices_are_screened_independently(harness: Harness, tenant: str, second: str) -> None:
    harness.upstream.stream_choice_pieces = {0: SAFE_PIECES, 1: ["Fine. ", *UNSAFE]}
    chunks = stream_chat(harness, tenant, n=2)
    assert text_of(chunks, 0) == "".join(SAFE_PIECES) and finish_of(chunks, 0) == ["stop"]
    assert text_of(chunks, 1) == second
    assert finish_of(chunks, 1) == (["content_filter"] if tenant == "blocker" else ["stop"])


# --- errors and disconnects --------------------------------------------------------------------------------


def test_inbound_block_with_stream_is_a_json_400_before_any_event(harness: Harness) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a kaboom"}], "stream": True}
    response = harness.post("/v1/chat/completions", body)
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "content_policy_violation"
    assert harness.upstream.received == []
    with harness.client() as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=body["messages"], stream=True)


def test_upstream_error_before_the_stream_passes_through_as_json(harness: Harness) -> None:
    harness.upstream.status = 429
    harness.upstream.error = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit"}}
    with pytest.raises(openai.RateLimitError) as caught:
        stream_chat(harness)
    assert caught.value.code == "rate_limit"
    records = harness.records_for(caught.value.response.headers["x-request-id"])
    assert [(r["direction"], r["upstream_status"]) for r in records] == [("inbound", 429)]


@pytest.mark.parametrize("mode", ["abort", "truncate", "invalid_json"])
def test_a_broken_upstream_stream_ends_with_an_error_event(harness: Harness, mode: str) -> None:
    fake = harness.upstream
    fake.stream_pieces = ["Screened before the break. ", "Held when it", " breaks", " and more."]
    fake.stream_break, fake.stream_break_after = mode, 3
    response, datas = raw_stream(harness, {})
    assert datas[-1] != "[DONE]"
    error = json.loads(datas[-1])["error"]
    assert error["type"] == "api_error" and error["code"].startswith("upstream")
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in datas[:-1])
    assert text == "Screened before the break. Held when it breaks"  # the tail was screened, then sent
    record = outbound(harness, response.headers["x-request-id"])
    assert record["extra"]["outcome"] == "upstream_error"
    with pytest.raises(openai.APIError):
        stream_chat(harness)


def test_client_disconnect_closes_the_upstream_and_is_audited(harness: Harness) -> None:
    fake = harness.upstream
    fake.stream_pieces, fake.stream_delay_s = ["One more sentence. "] * 500, 0.01
    closed, finished = fake.streams_closed, fake.streams_finished
    with harness.client() as client:
        stream = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        request_id = stream.headers["x-request-id"]
        chunks = stream.parse()
        for _, _chunk in zip(range(5), chunks, strict=False):
            pass
        started = time.monotonic()
        chunks.close()
    wait_for(lambda: fake.streams_closed == closed + 1)
    assert time.monotonic() - started < 3.0 and fake.streams_finished == finished
    wait_for(lambda: any(r["direction"] == "outbound" for r in harness.records_for(request_id)))
    record = outbound(harness, request_id)
    assert record["extra"]["client_disconnected"] is True and record["action"] == "allow"

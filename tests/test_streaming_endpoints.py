"""Streamed legacy completions and Responses API events end to end, and the SSE decoding underneath."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from crest_proxy.classifier import CrestClassifier
from crest_proxy.streaming import sse
from crest_proxy.upstream import events as upstream_events
from tests.openapi_schemas import assert_valid
from tests.support.harness import Harness, key_of
from tests.support.policies import make_policy
from tests.support.waiting import wait_for

PIECES = ["Hello", " there. ", "How are", " you? ", "Fine."]
UNSAFE = ["Here is", " a kab", "oom rec", "ipe. "]


@pytest.fixture(autouse=True)
def _reset(harness: Harness) -> None:
    fake = harness.upstream
    fake.status, fake.error, fake.stream_delay_s, fake.stream_pieces = 200, None, 0.0, PIECES
    fake.stream_choice_pieces, fake.stream_tool_pieces, fake.stream_break = {}, None, None


def raw_events(
    harness: Harness, path: str, body: dict[str, Any], tenant: str = "blocker"
) -> tuple[httpx.Response, list[tuple[str, str]]]:
    """The proxy's response and every SSE event it sent, as (event name, data)."""
    body = {"model": "gpt-4o-mini", "stream": True, **body}
    headers = {"authorization": f"Bearer {key_of(tenant)}"}
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(client, "POST", f"{harness.proxy_url}{path}", json=body, headers=headers) as source,
    ):
        return source.response, [(e.event, e.data) for e in source.iter_sse()]


def stream_response(harness: Harness, tenant: str) -> list[Any]:
    with harness.client(tenant) as client:
        return list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))


def outbound(harness: Harness, request_id: str) -> dict[str, Any]:
    (record,) = [r for r in harness.records_for(request_id) if r["direction"] == "outbound"]
    return record


# --- legacy completions --------------------------------------------------------------------------------


def test_completions_stream_safe_and_blocked(harness: Harness) -> None:
    with harness.client() as client:
        chunks = list(client.completions.create(model="gpt-4o-mini", prompt="hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "".join(PIECES)
    assert chunks[-1].choices[0].finish_reason == "stop"
    harness.upstream.stream_pieces = ["Okay. ", *UNSAFE, "More."]
    response, events = raw_events(harness, "/v1/completions", {"prompt": "hi"})
    assert events[-1] == ("message", "[DONE]") and "kab" not in str(events)
    chunks = [json.loads(data) for _, data in events[:-1]]
    # The spec has no chunk schema for legacy completions; the chunk the proxy writes to end the choice
    # is a complete CreateCompletionResponse.
    assert_valid(chunks[-1], "CreateCompletionResponse")
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Okay. "
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert outbound(harness, response.headers["x-request-id"])["action"] == "block"


async def test_completions_stream_redacts_with_the_async_sdk(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["Okay. ", *UNSAFE, "More."]
    client = harness.async_client("redactor")
    stream = await client.completions.create(model="gpt-4o-mini", prompt="hi", stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == "Okay. [gone] More."
    await client.close()


# --- Responses API ---------------------------------------------------------------------------------------


def test_responses_stream_safe_passes_every_event(harness: Harness) -> None:
    with harness.client() as client:
        events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
        with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
            assert stream.get_final_response().output_text == "".join(PIECES)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "".join(PIECES)
    assert events[-1].response.output_text == "".join(PIECES)
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_stream_events_validate_against_the_spec(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["Okay. ", *UNSAFE]
    for tenant in ("blocker", "redactor"):
        _, events = raw_events(harness, "/v1/responses", {"input": "hi"}, tenant)
        for name, data in events:
            event = json.loads(data)
            assert name == event["type"]
            assert_valid(event, "ResponseStreamEvent")


def test_responses_stream_block_ends_with_response_incomplete(harness: Harness) -> None:
    fake = harness.upstream
    fake.stream_pieces = ["Okay. ", *UNSAFE, *(["More text. "] * 100)]
    fake.stream_delay_s = 0.002
    closed, finished = fake.streams_closed, fake.streams_finished
    response, events = raw_events(harness, "/v1/responses", {"input": "hi"})
    assert "kab" not in str(events) and "Here is" not in str(events)
    last = json.loads(events[-1][1])
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "content_filter"}
    assert last["response"]["output"][0]["content"][0]["text"] == "Okay. "
    wait_for(lambda: fake.streams_closed != closed, what="the upstream stream to close")
    assert fake.streams_closed == closed + 1 and fake.streams_finished == finished
    record = outbound(harness, response.headers["x-request-id"])
    assert record["action"] == "block" and record["extra"]["stream"] is True


def test_responses_stream_redacts_deltas_and_every_repeat_of_the_text(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["Okay. ", *UNSAFE, "More."]
    events = stream_response(harness, "redactor")
    assert "kaboom" not in str([e.model_dump() for e in events])
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    (done,) = [e.text for e in events if e.type == "response.output_text.done"]
    assert deltas == done == events[-1].response.output_text == "Okay. [gone] More."


def test_responses_stream_refusal_style_adds_the_message(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["Okay. ", *UNSAFE]
    events = stream_response(harness, "refuser")
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Okay. I can't help with that." and events[-1].type == "response.incomplete"


async def test_responses_stream_cut_short_ends_with_an_error_event(harness: Harness) -> None:
    harness.upstream.stream_break, harness.upstream.stream_break_after = "truncate", 3
    client = harness.async_client()
    stream = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "error" and events[-1].code == "upstream_truncated"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "".join(PIECES[:3])  # what arrived, screened at the cut, then released
    await client.close()


# --- SSE decoding --------------------------------------------------------------------------------------


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


async def decode(chunks: list[bytes]) -> list[tuple[str, str]]:
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Chunks(chunks))
    return [(e.event, e.data) async for e in upstream_events.events(response)]


async def test_events_survive_a_split_at_every_byte() -> None:
    body = (
        sse.json_frame({"delta": "これは kaboom です。"}, "response.output_text.delta")
        + sse.frame("multi\nline 👍🏽")
        + b": a comment\r\n"
        + "data: crlf é\r\n\r\n".encode()
        + sse.DONE
    )
    expected = [
        ("response.output_text.delta", '{"delta":"これは kaboom です。"}'),
        ("message", "multi\nline 👍🏽"),
        ("message", "crlf é"),
        ("message", "[DONE]"),
    ]
    assert await decode([body]) == expected
    for i in range(1, len(body)):
        assert await decode([body[:i], body[i:]]) == expected, i
    assert await decode([body[i : i + 1] for i in range(len(body))]) == expected


def test_json_of_rejects_what_it_cannot_relay() -> None:
    from httpx_sse import ServerSentEvent

    with pytest.raises(sse.StreamBroken):
        sse.json_of(ServerSentEvent(data="{not json"))
    with pytest.raises(sse.StreamBroken):
        sse.json_of(ServerSentEvent(data="[1, 2]"))
    assert sse.json_of(ServerSentEvent(data='{"a": 1}')) == {"a": 1}


# --- dialects fed directly (event shapes the fake upstream does not script) ------------------------------


def _policy(action: str = "block") -> Any:
    return make_policy(outbound={"action": action})


async def _run(dialect: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Feed typed events to a dialect; the JSON of every frame it sends until it stops."""
    from httpx_sse import ServerSentEvent

    sent: list[dict[str, Any]] = []
    for event in events:
        step = await dialect.feed(ServerSentEvent(event=event.get("type"), data=json.dumps(event)))
        for frame in step.frames:
            data = "".join(line[6:] for line in frame.decode().splitlines() if line.startswith("data: "))
            sent.append(json.loads(data))
        if step.stop:
            break
    return sent


def _function_call_events(arguments: list[str]) -> list[dict[str, Any]]:
    whole = "".join(arguments)
    item = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "lookup",
        "status": "in_progress",
    }
    ids = {"item_id": "fc_1", "output_index": 0}
    done_item = {**item, "arguments": whole, "status": "completed"}
    return [
        {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "arguments": ""}},
        *({"type": "response.function_call_arguments.delta", **ids, "delta": a} for a in arguments),
        {"type": "response.function_call_arguments.done", **ids, "name": "lookup", "arguments": whole},
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {
            "type": "response.completed",
            "response": {"id": "resp_1", "status": "completed", "output": [done_item]},
        },
    ]


async def test_responses_function_call_arguments_are_screened(classifier: CrestClassifier) -> None:
    from crest_proxy.screening.guard import Guard
    from crest_proxy.screening.holdback import StreamScreener
    from crest_proxy.streaming.responses import ResponseStream

    def dialect() -> ResponseStream:
        return ResponseStream(StreamScreener(Guard(classifier), _policy()), _policy())

    safe = ['{"query": ', '"weather in', ' Paris"}']
    sent = await _run(dialect(), _function_call_events(safe))
    deltas = [e["delta"] for e in sent if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(deltas) == "".join(safe)
    assert sent[-1]["type"] == "response.completed"
    assert sent[-1]["response"]["output"][0]["arguments"] == "".join(safe)
    sent = await _run(dialect(), _function_call_events(['{"query": ', '"zar', 'quon recipe"}']))
    assert "zar" not in json.dumps(sent)
    assert sent[-1]["type"] == "response.incomplete"


async def test_an_upstream_error_event_mid_stream_is_passed_on(classifier: CrestClassifier) -> None:
    from crest_proxy.screening.guard import Guard
    from crest_proxy.screening.holdback import StreamScreener
    from crest_proxy.streaming.choices import ChoiceStream

    policy = _policy()
    dialect = ChoiceStream("chat.completions", StreamScreener(Guard(classifier), policy), policy, choices=1)
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    piece = {**chunk, "choices": [{"index": 0, "delta": {"content": "Held part"}, "finish_reason": None}]}
    error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    sent = await _run(dialect, [piece, error])
    assert [e.get("choices", [{}])[0].get("delta", {}).get("content") for e in sent[:-1]] == ["Held part"]
    assert sent[-1] == error and dialect.outcome == "upstream_error"

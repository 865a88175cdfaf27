"""Streamed Messages end to end: the real Anthropic SDK -> crest-proxy -> a fake Anthropic event stream.

The same bounded hold-back as OpenAI streams: nothing unscreened reaches the client, redaction per
sentence, a block ends the message with ``stop_reason: "refusal"``; every split of the unsafe sentence
across deltas and network reads is still caught.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crest_proxy.classifier import CrestClassifier
from tests.anthropic_harness import UPSTREAM_KEY, AnthropicHarness, key_of, running_anthropic_proxy
from tests.fake_anthropic import frame, message_events, text_events, thinking_events, tool_events
from tests.test_streaming import RechunkingTransport

MODEL = "claude-fake"
HELLO = [{"role": "user", "content": "Tell me something"}]
SAFE = ["The sun", " is warm", " today. ", "We walked to", " the harbour. ", "Bye."]


@pytest.fixture(scope="module")
def transport() -> RechunkingTransport:
    return RechunkingTransport()


@pytest.fixture(scope="module")
def harness(
    tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier, transport: RechunkingTransport
) -> Iterator[AnthropicHarness]:
    with running_anthropic_proxy(
        tmp_path_factory.mktemp("anthropic-stream"), classifier, transport=transport
    ) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset(harness: AnthropicHarness, transport: RechunkingTransport) -> None:
    harness.fake.reset()
    transport.chunk_size = None


def script(harness: AnthropicHarness, *content: list[dict[str, Any]], stop_reason: str = "end_turn") -> None:
    blocks = [event for events in content for event in events]
    harness.fake.events = message_events(blocks, stop_reason=stop_reason)


def stream(harness: AnthropicHarness, tenant: str = "claude", **kwargs: Any) -> tuple[Any, list[Any], str]:
    """The final message, every SDK event, and the raw body (to prove no unsafe byte was sent)."""
    with (
        harness.client(tenant) as client,
        client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO, **kwargs) as events,
    ):
        seen = list(events)
        final = events.get_final_message()
    raw = "".join(str(e.model_dump()) for e in seen)
    return final, seen, raw


def raw_body(harness: AnthropicHarness, tenant: str = "claude") -> str:
    body = {"model": MODEL, "max_tokens": 8, "messages": HELLO, "stream": True}
    return harness.post(body, tenant=tenant).text


def test_safe_stream_arrives_whole_with_every_event_kind(harness: AnthropicHarness) -> None:
    script(harness, text_events(SAFE))
    final, seen, _ = stream(harness)
    assert final.content[0].text == "".join(SAFE) and final.stop_reason == "end_turn"
    kinds = {e.type for e in seen}
    assert {
        "message_start",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    } <= kinds
    assert final.usage.output_tokens == 7
    assert harness.fake.last.body["stream"] is True


def test_unsafe_sentence_ends_the_message_as_a_refusal(harness: AnthropicHarness) -> None:
    script(harness, text_events(["Fine start. ", "Then a kab", "oom recipe. ", "More."]))
    final, _, raw = stream(harness)
    assert final.stop_reason == "refusal"
    assert final.content[0].text == "Fine start. "
    assert "kab" not in raw
    body = raw_body(harness)
    assert "kab" not in body and "refusal" in body and body.rstrip().endswith('{"type":"message_stop"}')


def test_refusal_style_adds_the_policy_message(harness: AnthropicHarness) -> None:
    script(harness, text_events(["Okay. ", "a kaboom here. "]))
    final, _, _ = stream(harness, "refuser")
    assert (final.content[0].text, final.stop_reason) == ("Okay. I can't help with that.", "refusal")


def test_redactor_replaces_the_sentence_and_keeps_streaming(harness: AnthropicHarness) -> None:
    script(harness, text_events(["Write to ana@exa", "mple.com today. ", "Bye."]))
    final, _, raw = stream(harness, "redactor")
    assert final.content[0].text == "Write to [gone] today. Bye."
    assert "ana@" not in raw and final.stop_reason == "end_turn"


def test_tool_use_input_deltas_are_screened_and_parse(harness: AnthropicHarness) -> None:
    script(
        harness,
        text_events(["Let me look. "]),
        tool_events(['{"query": ', '"weather in', ' Paris"}'], index=1),
    )
    final, _, _ = stream(harness, tools=[{"name": "lookup", "input_schema": {"type": "object"}}])
    assert final.content[1].input == {"query": "weather in Paris"}
    script(harness, tool_events(['{"query": "a kab', 'oom"}']))
    final, _, raw = stream(harness)
    assert final.stop_reason == "refusal" and "kab" not in raw


def test_thinking_deltas_are_screened_and_the_signature_passes(harness: AnthropicHarness) -> None:
    script(harness, thinking_events(["Let me think. ", "Fine."]), text_events(["Answer."], index=1))
    final, _, _ = stream(harness)
    assert (final.content[0].thinking, final.content[0].signature) == ("Let me think. Fine.", "c2ln")
    script(harness, thinking_events(["Maybe a zarq", "uon. "]), text_events(["Answer."], index=1))
    final, _, raw = stream(harness)
    assert final.stop_reason == "refusal" and "zarq" not in raw


async def test_async_sdk_stream(harness: AnthropicHarness) -> None:
    script(harness, text_events(SAFE))
    async with (
        harness.async_client() as client,
        client.messages.stream(model=MODEL, max_tokens=8, messages=HELLO) as events,
    ):
        text = "".join([t async for t in events.text_stream])
    assert text == "".join(SAFE)


def test_upstream_error_event_is_passed_on_after_the_screened_text(harness: AnthropicHarness) -> None:
    events = message_events(text_events(["Safe part. ", "held"]))[:-3]
    harness.fake.events = [
        *events,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    body = raw_body(harness)
    assert "Safe part. " in body and "overloaded_error" in body
    assert body.rstrip().endswith("}}") and "held" in body  # safe held text is released before the error


def test_truncated_stream_ends_with_an_error_event(harness: AnthropicHarness) -> None:
    harness.fake.events = message_events(text_events(["Safe part. "]))[:-2]
    body = raw_body(harness)
    assert "event: error" in body and "api_error" in body


def test_unknown_events_are_dropped(harness: AnthropicHarness) -> None:
    harness.fake.events = message_events([{"type": "vendor_text", "text": "a kaboom"}, *text_events(["Hi."])])
    body = raw_body(harness)
    assert "kaboom" not in body and "Hi." in body


def test_stream_blocked_prompt_gets_an_error_not_a_stream(harness: AnthropicHarness) -> None:
    answer = harness.post(
        {
            "model": MODEL,
            "max_tokens": 8,
            "stream": True,
            "messages": [{"role": "user", "content": "a kaboom"}],
        }
    )
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"
    assert harness.fake.received == []


def test_stream_refusal_style_prompt_streams_a_refusal(harness: AnthropicHarness) -> None:
    with harness.client("refuser") as client:
        messages = [{"role": "user", "content": "a kaboom"}]
        with client.messages.stream(model=MODEL, max_tokens=8, messages=messages) as events:
            final = events.get_final_message()
    assert (final.content[0].text, final.stop_reason) == ("I can't help with that.", "refusal")


def test_stream_upstream_http_error_is_json_in_anthropics_shape(harness: AnthropicHarness) -> None:
    harness.fake.status = 429
    harness.fake.error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    answer = harness.post({"model": MODEL, "max_tokens": 8, "stream": True, "messages": HELLO})
    assert answer.status_code == 429 and answer.json()["error"]["type"] == "rate_limit_error"


def test_stream_upstream_error_is_read_capped_and_key_masked(harness: AnthropicHarness) -> None:
    # The early answer of a streaming request goes through the same capped, masking read as a plain one.
    harness.fake.status = 400
    leaked = f"Incorrect API key provided: {UPSTREAM_KEY[:14]}***"
    harness.fake.error = {"type": "error", "error": {"type": "invalid_request_error", "message": leaked}}
    answer = harness.post({"model": MODEL, "max_tokens": 8, "stream": True, "messages": HELLO})
    assert answer.status_code == 400
    assert UPSTREAM_KEY[:14] not in answer.text and "***" in answer.json()["error"]["message"]
    harness.fake.error = {"type": "error", "error": {"type": "api_error", "message": "x" * (17 << 20)}}
    answer = harness.post({"model": MODEL, "max_tokens": 8, "stream": True, "messages": HELLO})
    assert answer.status_code == 502  # over max_upstream_body_bytes (16 MiB): never held whole
    assert (
        answer.json()["error"]["type"] == "api_error"
        and "16777216 bytes" in answer.json()["error"]["message"]
    )


def test_stream_audit_record_names_messages(harness: AnthropicHarness) -> None:
    script(harness, text_events(["Then a kab", "oom. "]))
    answer = harness.post({"model": MODEL, "max_tokens": 8, "stream": True, "messages": HELLO})
    records = harness.records_for(answer.headers["x-request-id"])
    assert [(r["endpoint"], r["direction"]) for r in records] == [
        ("messages", "inbound"),
        ("messages", "outbound"),
    ]
    assert (records[-1]["action"], records[-1]["extra"]["outcome"]) == ("block", "blocked")


@pytest.mark.parametrize("sentence", ["これは kaboom です。", "Look 🧨 kaboom 👍🏽 now! "])
def test_splits_at_every_character_and_byte_still_catch_the_sentence(
    harness: AnthropicHarness, transport: RechunkingTransport, sentence: str
) -> None:
    transport.chunk_size = (
        1  # every multi-byte character (and every SSE line) also arrives split across reads
    )
    safe = sentence.replace("kaboom", "teacup")

    def pieces(text: str, i: int | None) -> list[str]:
        middle = list(text) if i is None else [text[:i], text[i:]]  # None: one character per delta
        return ["Safe intro. ", *middle, "Safe outro."]

    for i in [*range(1, len(sentence)), None]:
        script(harness, text_events(pieces(sentence, i)))
        body = raw_body(harness)
        assert "kaboom" not in body and '"stop_reason":"refusal"' in body, i
        assert "Safe intro. " in body and "Safe outro." not in body, i
        script(harness, text_events(pieces(safe, i)))
        final, _, _ = stream(harness)
        assert final.content[0].text == f"Safe intro. {safe}Safe outro.", i


def test_crlf_frames_cut_into_reads_of_any_size_decode_alike(
    harness: AnthropicHarness, transport: RechunkingTransport
) -> None:
    events = message_events(text_events(["Hi there. ", "a kaboom. "]))
    raw = b"".join(frame(e) for e in events).replace(b"\n", b"\r\n")
    for size in (1, 2, 3, 7, 64, len(raw)):
        harness.fake.raw_stream, transport.chunk_size = raw, size
        with httpx.Client(timeout=30) as client:
            body = client.post(
                f"{harness.url}/v1/messages",
                json={"model": MODEL, "max_tokens": 8, "stream": True, "messages": HELLO},
                headers={"x-api-key": key_of("claude")},
            ).text
        assert "kaboom" not in body and "Hi there. " in body and '"stop_reason":"refusal"' in body, size


def test_text_in_start_events_is_held_back_like_deltas(harness: AnthropicHarness) -> None:
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "A kab"}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "oom now. "}}
    events = message_events([start, delta, {"type": "content_block_stop", "index": 0}])
    events[0]["message"]["content"] = [{"type": "text", "text": "a zarquon"}]  # the API sends it empty
    harness.fake.events = events
    body = raw_body(harness)
    assert "kab" not in body and "zarquon" not in body and '"stop_reason":"refusal"' in body


def test_events_named_only_in_their_data_are_screened(harness: AnthropicHarness) -> None:
    events = message_events(text_events(["Then a kab", "oom. "]))
    harness.fake.raw_stream = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
    body = raw_body(harness)
    assert "kab" not in body and '"stop_reason":"refusal"' in body

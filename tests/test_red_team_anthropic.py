"""Red team: attacks on the Anthropic Messages endpoint through the running proxy (issue 16).

The trigger word "kaboom" is hidden in tool input JSON escapes, prefilled stream events, blocks of types
the stream dialect does not know, fields the registry might miss and duplicate keys; no unsafe byte may
reach the upstream (inbound) or the client (outbound), read raw or decoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from crest_proxy.classifier.protocol import Classifier
from tests.anthropic_harness import AnthropicHarness, running_anthropic_proxy
from tests.fake_anthropic import message_events, text_events, tool_events

WORD = "kaboom"
MODEL = "claude-fake"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, classifier: Classifier) -> Iterator[AnthropicHarness]:
    with running_anthropic_proxy(tmp_path_factory.mktemp("red-anthropic"), classifier) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(harness: AnthropicHarness) -> None:
    harness.fake.reset()


def _decoded(response: httpx.Response) -> str:
    """The answer's text with every JSON payload decoded (escapes resolved), so hidden words show."""
    out = []
    for line in response.text.splitlines():
        data = line[5:].strip() if line.startswith("data:") else line
        try:
            value = json.loads(data)
            out.append(json.dumps(value, ensure_ascii=False))
            for inner in _json_strings(value):  # partial_json pieces are JSON text themselves
                out.append(inner)
        except ValueError:
            out.append(data)
    return "\n".join(out)


def _json_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)
    elif isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return
        yield json.dumps(decoded, ensure_ascii=False)


def _stream(harness: AnthropicHarness, events: list[dict[str, Any]], tenant: str = "claude") -> str:
    harness.fake.events = events
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    return _decoded(harness.post(body, tenant=tenant))


def _joined_input(text: str) -> str:
    """The tool input a client assembles from the ``partial_json`` pieces of a stream."""
    pieces = []
    for line in text.splitlines():
        if '"input_json_delta"' in line:
            pieces.append(json.loads(line)["delta"]["partial_json"])
    return "".join(pieces)


@pytest.mark.parametrize(
    "pieces",
    [
        ['{"q": "\\u006b\\u0061boom"}'],
        ['{"q": "Steps:\\nkaboom"}'],
        ['{"q": "ka', "bo", 'om"}'],
        ['{"\\u006baboom": 1}'],
    ],
    ids=["unicode-escapes", "newline-escape", "split", "escaped-key"],
)
def test_tool_input_json_is_screened_decoded(harness: AnthropicHarness, pieces: list[str]) -> None:
    text = _stream(harness, message_events(tool_events(pieces)))
    assembled = _joined_input(text)
    decoded = json.dumps(json.loads(assembled), ensure_ascii=False) if assembled else ""
    assert WORD not in decoded
    assert WORD not in text


def test_tool_input_redaction_stays_valid_json(harness: AnthropicHarness) -> None:
    text = _stream(harness, message_events(tool_events(['{"q": "Say ', 'kaboom now.", "n": 2}'])), "redactor")
    assembled = json.loads(_joined_input(text))
    assert WORD not in json.dumps(assembled) and assembled["n"] == 2 and set(assembled) == {"q", "n"}


def test_tool_input_through_the_sdk_stream(harness: AnthropicHarness) -> None:
    harness.fake.events = message_events(tool_events(['{"q": "\\u006b\\u0061boom"}']))
    client = harness.client()
    with client.messages.stream(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert WORD not in json.dumps([block.model_dump() for block in final.content], ensure_ascii=False)


def test_prefilled_message_start_and_block_start(harness: AnthropicHarness) -> None:
    events = message_events(text_events(["Hello."]))
    events[0]["message"]["content"] = [{"type": "text", "text": WORD}]
    start = {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": WORD}}
    tool = {"type": "tool_use", "id": "t", "name": "f", "input": {"q": WORD}}
    events[3:3] = [start, {"type": "content_block_stop", "index": 1}]
    events[5:5] = [{"type": "content_block_start", "index": 2, "content_block": tool},
                   {"type": "content_block_stop", "index": 2}]  # fmt: skip
    assert WORD not in _stream(harness, events)


def test_text_delta_in_a_block_of_unknown_type(harness: AnthropicHarness) -> None:
    odd = {"type": "content_block_start", "index": 0, "content_block": {"type": "mystery"}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": WORD}}
    events = message_events([odd, delta, {"type": "content_block_stop", "index": 0}])
    assert WORD not in _stream(harness, events)


def test_delta_type_that_does_not_match_its_block(harness: AnthropicHarness) -> None:
    start = text_events(["Hi."])[0]
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": WORD}}
    events = message_events([start, delta, {"type": "content_block_stop", "index": 0}])
    assert WORD not in _stream(harness, events)


def test_text_delta_without_a_block_start(harness: AnthropicHarness) -> None:
    delta = {"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": WORD}}
    events = message_events([delta, {"type": "content_block_stop", "index": 3}])
    assert WORD not in _stream(harness, events)


def test_word_split_across_two_blocks(harness: AnthropicHarness) -> None:
    events = message_events([*text_events(["Say ka"], index=0), *text_events(["boom now."], index=1)])
    text = _stream(harness, events)
    assert not ("ka" in text and "boom now" in text)


# --- inbound ------------------------------------------------------------------------------------------


def _send(harness: AnthropicHarness, body: dict[str, Any] | str) -> httpx.Response:
    if isinstance(body, dict):
        body = {"model": MODEL, "max_tokens": 20, **body}
    return harness.post(body)


def _upstream_clean(harness: AnthropicHarness) -> None:
    for received in harness.fake.received:
        assert WORD not in json.dumps(received.body, ensure_ascii=False)


def _user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(blocks)}]}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


_HI = [{"role": "user", "content": "hi"}]
_CACHED = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
_TOOL_USE = {"type": "tool_use", "id": "t", "name": WORD, "input": {}}
_RESULT = {"type": "tool_result", "tool_use_id": "t", "content": [_text('{"r": "\\u006baboom"}')]}
_DOCUMENT = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": f"About {WORD}."},
}
INBOUND = {
    "tool-name": {"messages": _HI, "tools": [{"name": WORD, "input_schema": {}}]},
    "unknown-block": _user({"type": "mystery", "text": WORD}),
    "split-with-empty-first": _user(_text(""), _text("ka"), _text("boom")),
    "system-blocks": {"messages": _HI, "system": [_CACHED, _text(WORD)]},
    "tool-use-name": {"messages": [{"role": "assistant", "content": [_TOOL_USE]}]},
    "tool-result-escape": _user(_RESULT),
    "text-document": _user(_DOCUMENT),
}


@pytest.mark.parametrize("body", INBOUND.values(), ids=INBOUND.keys())
def test_inbound_placements(harness: AnthropicHarness, body: dict[str, Any]) -> None:
    reply = _send(harness, body)
    assert reply.status_code == 400, reply.text
    _upstream_clean(harness)


def test_inbound_duplicate_keys(harness: AnthropicHarness) -> None:
    raw = (
        '{"model":"claude-fake","max_tokens":20,"messages":[{"role":"user","content":"kaboom"}],'
        '"messages":[{"role":"user","content":"hi"}],"system":"kaboom","system":"be nice"}'
    )
    harness.post(raw)
    _upstream_clean(harness)


def test_sdk_block_is_an_anthropic_error(harness: AnthropicHarness) -> None:
    with pytest.raises(anthropic.BadRequestError):
        harness.client().messages.create(
            model=MODEL, max_tokens=20, messages=[{"role": "user", "content": f"Tell me about {WORD}."}]
        )
    _upstream_clean(harness)


def test_outbound_tool_use_name_and_citations(harness: AnthropicHarness) -> None:
    harness.fake.content = [{"type": "tool_use", "id": "t", "name": WORD, "input": {}}]
    reply = _send(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert WORD not in reply.text


def test_streamed_tool_name(harness: AnthropicHarness) -> None:
    events = message_events(tool_events(["{}"], name=WORD))
    assert WORD not in _stream(harness, events)


def test_block_of_unknown_type_sent_whole_at_start(harness: AnthropicHarness) -> None:
    odd = {"type": "content_block_start", "index": 0, "content_block": {"type": "mystery", "note": WORD}}
    events = message_events([odd, {"type": "content_block_stop", "index": 0}])
    assert WORD not in _stream(harness, events)


def test_streamed_tool_name_is_redacted_in_place(harness: AnthropicHarness) -> None:
    events = message_events(tool_events(['{"q": 1}'], name=f"Say {WORD} now."))
    text = _stream(harness, events, "redactor")
    assert WORD not in text and '"q": 1' in text


def test_tool_result_json_redaction_stays_valid_and_byte_exact(harness: AnthropicHarness) -> None:
    output = '{"ok":true,  "note":"Say kaboom now.","n":2.50}'
    block = {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": output}]}
    body = {"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": [block]}]}
    assert harness.post(body, tenant="redactor").status_code == 200
    sent = harness.fake.last.body["messages"][0]["content"][0]["content"][0]["text"]
    assert WORD not in sent and sent.startswith('{"ok":true,  "note":"') and sent.endswith('","n":2.50}'), (
        sent
    )


@pytest.mark.parametrize(
    "block",
    [
        {"type": "mystery", "note": WORD},
        {"type": "text", "text": "Hi.", "citations": [{"type": "char_location", "cited_text": WORD}]},
        {"type": "text", "text": "Hi.", "citations": [
            {"type": "web_search_result_location", "cited_text": "a", "url": "https://x", "title": WORD}]},
        {"type": "text", "text": "Hi.", "citations": [
            {"type": "char_location", "cited_text": "a", "document_title": WORD, "document_index": 0}]},
        {
            "type": "web_search_tool_result",
            "tool_use_id": "t",
            "content": [{"type": "web_search_result", "title": WORD, "url": "https://x"}],
        },
    ],
    ids=["unknown-block", "citation", "citation-title", "citation-document-title", "search-result-title"],
)  # fmt: skip
def test_outbound_blocks_carrying_text(harness: AnthropicHarness, block: dict[str, Any]) -> None:
    harness.fake.content = [block]
    reply = _send(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert WORD not in reply.text


def test_count_tokens_is_screened(harness: AnthropicHarness) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"About {WORD}."}]}
    reply = harness.post(body, path="/v1/messages/count_tokens")
    assert reply.status_code == 400
    _upstream_clean(harness)


def test_streamed_citation_delta(harness: AnthropicHarness) -> None:
    citation = {"type": "char_location", "cited_text": WORD, "document_index": 0}
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "citations_delta", "citation": citation},
    }
    events = message_events([text_events(["Hi."])[0], delta, {"type": "content_block_stop", "index": 0}])
    assert WORD not in _stream(harness, events)


def test_word_split_across_two_blocks_not_streamed(harness: AnthropicHarness) -> None:
    harness.fake.content = [{"type": "text", "text": "Say ka"}, {"type": "text", "text": "boom now."}]
    reply = _send(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert "boom now" not in reply.text


def test_block_index_reused_after_its_stop(harness: AnthropicHarness) -> None:
    events = message_events([*text_events(["Hi."]), *text_events([f"Say {WORD} now."])])
    assert WORD not in _stream(harness, events)


def test_input_schema_sent_as_a_json_string(harness: AnthropicHarness) -> None:
    schema = json.dumps({"type": "object", "properties": {"q": {"description": WORD}}})
    reply = _send(harness, {"messages": _HI, "tools": [{"name": "f", "input_schema": schema}]})
    assert reply.status_code == 400, reply.text
    _upstream_clean(harness)

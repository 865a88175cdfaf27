"""Red team: attacks on the OpenAI-compatible endpoints through the running proxy (issue 13).

Each test places the trigger word "kaboom" where an attacker would hide it — an odd shape, an encoding, a
split, a field the registry might miss, a trick in the upstream's answer — and asserts that no unsafe byte
reaches the upstream (inbound) or the client (outbound). The upstream here answers with exact scripted
bytes (status, headers, body pieces), so answers no well-behaved server sends can be tried too.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from crest_proxy.classifier.protocol import Classifier
from tests.support.harness import Harness, running_proxy
from tests.support.upstream import FakeUpstream, Received

WORD = "kaboom"
SAFE = "Hello there, how are you today?"


@dataclass
class RawUpstream(FakeUpstream):
    """An upstream that answers every POST with scripted bytes (``pieces``) and headers."""

    pieces: list[bytes] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})

    def app(self) -> Any:
        async def answer(request: Request) -> Response:
            raw = await request.body()
            body = json.loads(raw) if raw else None
            self.received.append(Received(request.method, request.url.path, dict(request.headers), body))
            self.last_raw = raw

            async def chunks() -> Any:
                for piece in self.pieces:
                    yield piece

            return StreamingResponse(chunks(), headers=self.headers)

        return Starlette(routes=[Route("/v1/{path:path}", answer, methods=["POST"])])

    def answer_json(self, body: dict[str, Any]) -> None:
        """Answer with ``body`` as one JSON document."""
        self.pieces = [json.dumps(body).encode()]
        self.headers = {"content-type": "application/json"}

    def answer_events(self, events: list[dict[str, Any] | str], *, typed: bool = False) -> None:
        """Answer with an event stream of ``events`` (a string is sent as the data line as it is)."""
        frames = []
        for event in events:
            data = event if isinstance(event, str) else json.dumps(event)
            name = f"event: {event['type']}\n" if typed and isinstance(event, dict) else ""
            frames.append(f"{name}data: {data}\n\n".encode())
        self.pieces = frames
        self.headers = {"content-type": "text/event-stream"}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, classifier: Classifier) -> Iterator[Harness]:
    tmp: Path = tmp_path_factory.mktemp("red-team")
    with running_proxy(tmp, classifier, upstream=RawUpstream()) as running:
        yield running


@pytest.fixture
def upstream(harness: Harness) -> Iterator[RawUpstream]:
    fake = harness.upstream
    assert isinstance(fake, RawUpstream)
    fake.received.clear()
    fake.answer_json(_chat_answer(SAFE))
    yield fake


def _chat_answer(content: Any, **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }


def _chunk(delta: dict[str, Any], index: int = 0, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "finish_reason": finish, **extra}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


def _clean_upstream(upstream: RawUpstream) -> None:
    """The upstream got nothing, or nothing holding the trigger word (decoded and raw)."""
    for received in upstream.received:
        assert WORD not in json.dumps(received.body, ensure_ascii=False).lower()


def _post_chat(harness: Harness, body: dict[str, Any], tenant: str = "blocker") -> httpx.Response:
    return harness.post("/v1/chat/completions", {"model": "gpt-4o-mini", **body}, tenant=tenant)


def _stream_text(response: httpx.Response) -> str:
    """Every data payload of an SSE answer, decoded from JSON where it is JSON, joined."""
    out = []
    for line in response.text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            try:
                out.append(json.dumps(json.loads(data), ensure_ascii=False))
            except ValueError:
                out.append(data)
    return "\n".join(out)


# --- inbound: shapes and encodings ------------------------------------------------------------------------


def test_duplicate_keys_in_the_body_screen_what_the_upstream_reads(
    harness: Harness, upstream: RawUpstream
) -> None:
    raw = (
        '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"kaboom"}],'
        '"messages":[{"role":"user","content":"hi"}]}'
    )
    harness.post("/v1/chat/completions", raw)
    raw2 = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","content":"kaboom"}]}'
    reply = harness.post("/v1/chat/completions", raw2)
    assert reply.status_code == 400
    _clean_upstream(upstream)


def test_unicode_escapes_and_surrogate_pairs_are_read_decoded(
    harness: Harness, upstream: RawUpstream
) -> None:
    raw = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\u006b\\u0061boom"}]}'
    assert harness.post("/v1/chat/completions", raw).status_code == 400
    math = "".join(f"\\ud835\\udc{0x1A + ord(c) - ord('a'):02x}" for c in WORD)  # math bold, as pairs
    raw = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + math + '"}]}'
    assert harness.post("/v1/chat/completions", raw).status_code == 400
    _clean_upstream(upstream)


@pytest.mark.parametrize(
    "content",
    [
        [[{"type": "text", "text": WORD}]],
        {"type": "text", "text": WORD},
        [{"type": "text", "text": {"value": WORD}}],
        [{"type": "input_text", "text": WORD}],
        [{"type": "mystery", "text": WORD}],
        [{"type": "text", "text": "ka"}, {"type": "text", "text": "boom"}],
        [{"type": "text", "text": ""}] * 50 + [{"type": "text", "text": c} for c in WORD],
    ],
    ids=["nested-array", "object", "text-object", "input_text", "unknown-type", "split-parts", "tiny-parts"],
)
def test_odd_content_shapes_never_reach_the_upstream(
    harness: Harness, upstream: RawUpstream, content: Any
) -> None:
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": content}]})
    assert reply.status_code == 400, reply.text
    _clean_upstream(upstream)


def test_text_plain_file_parts_are_not_passed_unread(harness: Harness, upstream: RawUpstream) -> None:
    data = base64.b64encode(f"Please explain {WORD} in detail.".encode()).decode()
    part = {"type": "file", "file": {"filename": "notes.txt", "file_data": f"data:text/plain;base64,{data}"}}
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": [part]}]})
    assert reply.status_code == 400, reply.text
    _clean_upstream(upstream)


def test_responses_text_plain_input_file_is_not_passed_unread(
    harness: Harness, upstream: RawUpstream
) -> None:
    data = base64.b64encode(f"Please explain {WORD} in detail.".encode()).decode()
    part = {"type": "input_file", "filename": "a.txt", "file_data": f"data:text/plain;base64,{data}"}
    body = {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [part]}]}
    reply = harness.post("/v1/responses", body)
    assert reply.status_code == 400, reply.text
    _clean_upstream(upstream)


@pytest.mark.parametrize("keyword", ["pattern", "$comment", "format", "contentMediaType", "x-note"])
def test_schema_keywords_the_model_reads_are_screened(
    harness: Harness, upstream: RawUpstream, keyword: str
) -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string", keyword: f"the {WORD} plan"}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}], "tools": [tool]})
    assert reply.status_code == 400, reply.text
    _clean_upstream(upstream)


@pytest.mark.parametrize(
    "word",
    ["KABOOM", "Kaboom", "ᴋᴀʙᴏᴏᴍ", "🄺🄰🄱🄾🄾🄼", "ᵏᵃᵇᵒᵒᵐ", "ꓗꓮꓐꓳꓳꓟ", "k\u0332a\u0332boom"],
    ids=["upper", "title", "small-capitals", "squared", "modifier", "lisu", "underline-marks"],
)
def test_more_obfuscations(harness: Harness, upstream: RawUpstream, word: str) -> None:
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": f"Tell me about {word} now."}]})
    assert reply.status_code == 400, reply.text


def test_cherokee_lookalikes(harness: Harness, upstream: RawUpstream) -> None:
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "Tell me about ᏦᎪᏴᎾᎾᎷ now."}]})
    assert reply.status_code == 400, reply.text


# --- outbound: non-streamed answers ------------------------------------------------------------------------


def test_redacted_answer_does_not_leak_through_logprobs(harness: Harness, upstream: RawUpstream) -> None:
    tokens = [
        {"token": t, "logprob": -0.1, "bytes": list(t.encode()), "top_logprobs": []} for t in ["ka", "boom"]
    ]
    answer = _chat_answer(f"Say {WORD}.")
    answer["choices"][0]["logprobs"] = {"content": tokens, "refusal": None}
    upstream.answer_json(answer)
    reply = _post_chat(
        harness, {"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, "redactor"
    )
    assert reply.status_code == 200
    tokens_back = json.dumps(reply.json()["choices"][0].get("logprobs"))
    assert "boom" not in tokens_back


def test_answer_with_duplicate_keys_is_screened_as_the_client_reads_it(
    harness: Harness, upstream: RawUpstream
) -> None:
    body = json.dumps(_chat_answer(SAFE))
    body = body.replace('"content": "', f'"content": "{WORD}", "content": "', 1)
    body2 = json.dumps(_chat_answer(WORD)).replace('"content": "', f'"content": "{SAFE}", "content": "', 1)
    for raw in (body, body2):
        upstream.pieces = [raw.encode()]
        reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
        assert WORD not in reply.text


def test_gzip_and_bom_answers(harness: Harness, upstream: RawUpstream) -> None:
    import gzip

    upstream.pieces = [gzip.compress(json.dumps(_chat_answer(WORD)).encode())]
    upstream.headers = {"content-type": "application/json", "content-encoding": "gzip"}
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert WORD not in reply.text
    upstream.pieces = [b"\xef\xbb\xbf" + json.dumps(_chat_answer(WORD)).encode()]
    upstream.headers = {"content-type": "application/json"}
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert WORD not in reply.text


def test_answer_object_mismatch(harness: Harness, upstream: RawUpstream) -> None:
    answer = _chat_answer(WORD)
    answer["object"] = "text_completion"
    answer["choices"][0]["text"] = WORD
    upstream.answer_json(answer)
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert WORD not in reply.text


def test_streaming_request_answered_with_plain_json(harness: Harness, upstream: RawUpstream) -> None:
    upstream.answer_json(_chat_answer(WORD))
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert WORD not in reply.text


def test_plain_request_answered_with_a_stream(harness: Harness, upstream: RawUpstream) -> None:
    upstream.answer_events([_chunk({"content": WORD}), _chunk({}, finish="stop"), "[DONE]"])
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert WORD not in reply.text


# --- outbound: streams -------------------------------------------------------------------------------------


def _stream(
    harness: Harness, upstream: RawUpstream, events: list[Any], tenant: str = "blocker", **body: Any
) -> str:
    upstream.answer_events(events)
    request = {"messages": [{"role": "user", "content": "hi"}], "stream": True, **body}
    return _stream_text(_post_chat(harness, request, tenant))


def test_tool_name_split_over_deltas(harness: Harness, upstream: RawUpstream) -> None:
    call0 = {"index": 0, "id": "c1", "type": "function", "function": {"name": "ka", "arguments": ""}}
    call1 = {"index": 0, "function": {"name": "boom", "arguments": "{}"}}
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "tool_calls": [call0]}),
        _chunk({"tool_calls": [call1]}),
        _chunk({}, finish="tool_calls"), "[DONE]",
    ])  # fmt: skip
    assert not ('"ka"' in text and '"boom"' in text), text


def test_logprobs_only_chunk_is_screened(harness: Harness, upstream: RawUpstream) -> None:
    lp = {"content": [{"token": WORD, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "content": ""}), _chunk({}, logprobs=lp),
        _chunk({}, finish="stop"), "[DONE]",
    ], logprobs=True)  # fmt: skip
    assert WORD not in text


def test_redacted_stream_does_not_leak_through_logprobs(harness: Harness, upstream: RawUpstream) -> None:
    lp = {"content": [{"token": WORD, "logprob": -0.1, "bytes": None, "top_logprobs": []}], "refusal": None}
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "content": f"Say {WORD}."}, logprobs=lp),
        _chunk({}, finish="stop"), "[DONE]",
    ], tenant="redactor", logprobs=True)  # fmt: skip
    assert WORD not in text


def test_content_after_done_and_after_finish(harness: Harness, upstream: RawUpstream) -> None:
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "content": "Hi."}), _chunk({}, finish="stop"),
        _chunk({"content": WORD}), "[DONE]", _chunk({"content": WORD}),
    ])  # fmt: skip
    assert WORD not in text


def test_content_and_tool_calls_in_one_event(harness: Harness, upstream: RawUpstream) -> None:
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":"ka'}}
    more = {"index": 0, "function": {"arguments": 'boom"}'}}
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "content": "ka", "tool_calls": [call]}),
        _chunk({"content": "boom", "tool_calls": [more]}),
        _chunk({}, finish="tool_calls"), "[DONE]",
    ])  # fmt: skip
    assert "boom" not in text


def test_data_split_over_lines_and_crlf(harness: Harness, upstream: RawUpstream) -> None:
    first = json.dumps(_chunk({"role": "assistant", "content": WORD}))
    cut = first.index(", ")
    upstream.pieces = [
        f"data: {first[:cut]}\r\ndata: {first[cut:]}\r\n\r\n".encode(),
        b"data: " + json.dumps(_chunk({}, finish="stop")).encode() + b"\r\n\r\n",
        b"data: [DONE]\r\n\r\n",
    ]
    upstream.headers = {"content-type": "text/event-stream"}
    request = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    reply = _post_chat(harness, request)
    assert WORD not in _stream_text(reply)


def test_choice_index_as_string_or_missing(harness: Harness, upstream: RawUpstream) -> None:
    for index in ("0", None, 0.0):
        chunk = _chunk({"role": "assistant", "content": WORD})
        chunk["choices"][0]["index"] = index
        text = _stream(harness, upstream, [chunk, _chunk({}, finish="stop"), "[DONE]"])
        assert WORD not in text, index


# --- Responses streams -------------------------------------------------------------------------------------


def _responses_stream(
    harness: Harness, upstream: RawUpstream, events: list[dict[str, Any]], tenant: str = "blocker"
) -> str:
    for n, event in enumerate(events):
        event.setdefault("sequence_number", n)
    upstream.answer_events(events, typed=True)
    body = {"model": "gpt-4o-mini", "input": "hi", "stream": True}
    return _stream_text(harness.post("/v1/responses", body, tenant=tenant))


def _response(output: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {
        "id": "r",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "m",
        "output": output,
    }


def _message_item(text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {"id": "m1", "type": "message", "role": "assistant", "status": status, "content": [part]}


def test_responses_completed_repeats_a_different_text(harness: Harness, upstream: RawUpstream) -> None:
    ids = {"item_id": "m1", "output_index": 0, "content_index": 0}
    text = _responses_stream(harness, upstream, [
        {"type": "response.created", "response": _response([], "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": _message_item("", "in_progress")},
        {"type": "response.output_text.delta", **ids, "delta": "Hello."},
        {"type": "response.output_text.done", **ids, "text": WORD},
        {"type": "response.output_item.done", "output_index": 0, "item": _message_item(WORD)},
        {"type": "response.completed", "response": _response([_message_item(WORD)])},
    ])  # fmt: skip
    assert WORD not in text


_TITLE = f"Say {WORD} now."


def test_citation_titles_are_screened_in_every_answer_shape(harness: Harness, upstream: RawUpstream) -> None:
    """Web-search citation titles were screened only as Responses ``annotation.added`` events: in a chat
    answer, a Responses answer and the items, parts and final response a Responses stream repeats, they
    went out unread."""
    cited = {"url": "https://example.com/", "start_index": 0, "end_index": 2, "title": _TITLE}
    upstream.answer_json(
        _chat_answer("Hi there.", annotations=[{"type": "url_citation", "url_citation": cited}])
    )
    assert WORD not in _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]}).text
    item = _message_item("Hi there.")
    item["content"][0]["annotations"] = [{"type": "url_citation", **cited}]
    upstream.answer_json(_response([item]))
    assert WORD not in harness.post("/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}).text
    ids = {"item_id": "m1", "output_index": 0, "content_index": 0}
    for tenant in ("blocker", "redactor"):
        text = _responses_stream(harness, upstream, [
            {"type": "response.created", "response": _response([], "in_progress")},
            {"type": "response.output_item.added", "output_index": 0, "item": _message_item("")},
            {"type": "response.content_part.added", **ids, "part": copy.deepcopy(item["content"][0])},
            {"type": "response.output_text.delta", **ids, "delta": "Hi there."},
            {"type": "response.output_text.done", **ids, "text": "Hi there."},
            {"type": "response.content_part.done", **ids, "part": copy.deepcopy(item["content"][0])},
            {"type": "response.output_item.done", "output_index": 0, "item": copy.deepcopy(item)},
            {"type": "response.completed", "response": _response([copy.deepcopy(item)])},
        ], tenant=tenant)  # fmt: skip
        assert WORD not in text, tenant
        assert ("[gone]" in text) is (tenant == "redactor")


def test_responses_unknown_item_and_event(harness: Harness, upstream: RawUpstream) -> None:
    odd = {"id": "x1", "type": "mystery_call", "status": "completed", "notes": WORD}
    text = _responses_stream(harness, upstream, [
        {"type": "response.created", "response": _response([], "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": odd},
        {"type": "response.output_item.done", "output_index": 0, "item": odd},
        {"type": "response.completed", "response": _response([odd])},
    ])  # fmt: skip
    assert WORD not in text


def test_responses_unknown_delta_family(harness: Harness, upstream: RawUpstream) -> None:
    ids = {"item_id": "m1", "output_index": 0, "content_index": 0}
    text = _responses_stream(harness, upstream, [
        {"type": "response.created", "response": _response([], "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": _message_item("", "in_progress")},
        {"type": "response.output_text_v2.delta", **ids, "delta": WORD},
        {"type": "response.completed", "response": _response([_message_item("")])},
    ])  # fmt: skip
    assert WORD not in text


def test_responses_annotation_event(harness: Harness, upstream: RawUpstream) -> None:
    ids = {"item_id": "m1", "output_index": 0, "content_index": 0}
    note = {"type": "url_citation", "url": "https://x", "title": WORD, "start_index": 0, "end_index": 1}
    text = _responses_stream(harness, upstream, [
        {"type": "response.created", "response": _response([], "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": _message_item("", "in_progress")},
        {"type": "response.output_text.annotation.added", **ids, "annotation_index": 0, "annotation": note},
        {"type": "response.completed", "response": _response([_message_item("")])},
    ])  # fmt: skip
    assert WORD not in text


def test_second_choice_of_n(harness: Harness, upstream: RawUpstream) -> None:
    answer = _chat_answer(SAFE)
    answer["choices"].append(
        {**answer["choices"][0], "index": 1, "message": {"role": "assistant", "content": WORD}}
    )
    upstream.answer_json(answer)
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert WORD not in reply.text


def test_completions_stream_logprobs_under_redaction(harness: Harness, upstream: RawUpstream) -> None:
    def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
        lp = {"tokens": [text], "token_logprobs": [-0.1], "top_logprobs": None, "text_offset": [0]}
        return {"id": "c", "object": "text_completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}]}  # fmt: skip

    upstream.answer_events([chunk("Say "), chunk(f"{WORD}."), chunk("", "stop"), "[DONE]"])
    body = {"model": "gpt-4o-mini", "prompt": "hi", "stream": True, "logprobs": 1}
    text = _stream_text(harness.post("/v1/completions", body, tenant="redactor"))
    assert WORD not in text


# --- token alternatives (top_logprobs): text the model nearly wrote ---------------------------------------


def _token(token: str, *others: str) -> dict[str, Any]:
    top = [
        {"token": t, "logprob": -1.0 - n, "bytes": list(t.encode())} for n, t in enumerate((token, *others))
    ]
    return {"token": token, "logprob": -0.1, "bytes": list(token.encode()), "top_logprobs": top}


# "Hi there." chosen; the second-best token at the second position is the trigger word.
ALTERNATIVES = [_token("Hi", "Hello"), _token(" there", f" {WORD}"), _token(".")]
SAFE_ALTERNATIVES = [_token("Hi", "Hello"), _token(" there", " you"), _token(".")]
ASKED = {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 2}


def _chat_with(logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    answer = _chat_answer("Hi there.")
    answer["choices"][0]["logprobs"] = {"content": logprobs, "refusal": None}
    return answer


@pytest.mark.parametrize("stream", [False, True])
def test_unsafe_alternatives_block_or_are_dropped(
    harness: Harness, upstream: RawUpstream, stream: bool
) -> None:
    answer = _chat_with(ALTERNATIVES)
    if stream:
        lp = answer["choices"][0]["logprobs"]
        upstream.answer_events([_chunk({"role": "assistant", "content": "Hi there."}, logprobs=lp),
                                _chunk({}, finish="stop"), "[DONE]"])  # fmt: skip
    else:
        upstream.answer_json(answer)
    blocked = _post_chat(harness, {**ASKED, "stream": stream})
    assert WORD not in blocked.text and "content_filter" in blocked.text
    redacted = _post_chat(harness, {**ASKED, "stream": stream}, "redactor")
    assert (
        WORD not in redacted.text and "Hi there." in redacted.text and "content_filter" not in redacted.text
    )
    audited = harness.records_for(redacted.headers["x-request-id"])
    assert [r["action"] for r in audited if r["direction"] == "outbound"] == ["redact"]


@pytest.mark.parametrize("stream", [False, True])
def test_token_bytes_spelling_another_word_are_read(
    harness: Harness, upstream: RawUpstream, stream: bool
) -> None:
    hidden = {"token": "Hi", "logprob": -0.1, "bytes": list(WORD.encode()), "top_logprobs": []}
    lp = {"content": [hidden, _token(" there.")], "refusal": None}
    if stream:
        upstream.answer_events([_chunk({"role": "assistant", "content": "Hi there."}, logprobs=lp),
                                _chunk({}, finish="stop"), "[DONE]"])  # fmt: skip
    else:
        upstream.answer_json(
            {**_chat_with([]), "choices": [{**_chat_with([])["choices"][0], "logprobs": lp}]}
        )
    reply = _post_chat(harness, {**ASKED, "stream": stream})
    assert "content_filter" in reply.text and '"bytes"' not in reply.text  # blocked: no token goes out


@pytest.mark.parametrize("stream", [False, True])
def test_safe_alternatives_go_out_unchanged(harness: Harness, upstream: RawUpstream, stream: bool) -> None:
    answer = _chat_with(SAFE_ALTERNATIVES)
    if stream:
        lp = answer["choices"][0]["logprobs"]
        upstream.answer_events([_chunk({"role": "assistant", "content": "Hi there."}, logprobs=lp),
                                _chunk({}, finish="stop"), "[DONE]"])  # fmt: skip
    reply = _post_chat(harness, {**ASKED, "stream": stream}, "redactor")
    if stream:
        datas = [json.loads(line[5:]) for line in reply.text.splitlines() if line.startswith("data: {")]
        got = [c["logprobs"] for d in datas for c in d["choices"] if c.get("logprobs")]
        assert got == [{"content": SAFE_ALTERNATIVES, "refusal": None}]
    else:
        upstream.answer_json(answer)
        reply = _post_chat(harness, ASKED, "redactor")
        assert reply.json()["choices"][0]["logprobs"]["content"] == SAFE_ALTERNATIVES


@pytest.mark.parametrize("stream", [False, True])
def test_completions_top_logprobs_are_screened(harness: Harness, upstream: RawUpstream, stream: bool) -> None:
    lp = {"tokens": ["Hi", " there"], "token_logprobs": [-0.1, -0.1], "text_offset": [0, 2],
          "top_logprobs": [{"Hi": -0.1, "Say": -1.0}, {" there": -0.1, f" {WORD}": -1.0}]}  # fmt: skip
    head = {"id": "c", "object": "text_completion", "created": 1, "model": "m"}
    choice = {"index": 0, "text": "Hi there", "logprobs": lp, "finish_reason": "stop"}
    if stream:
        upstream.answer_events([{**head, "choices": [choice]}, "[DONE]"])
    else:
        upstream.answer_json({**head, "choices": [choice]})
    body = {"model": "gpt-4o-mini", "prompt": "hi", "logprobs": 2, "stream": stream}
    for tenant in ("blocker", "redactor"):
        reply = harness.post("/v1/completions", body, tenant=tenant)
        assert reply.status_code == 200 and WORD not in reply.text, tenant
        assert ("content_filter" in reply.text) is (tenant == "blocker")


def _responses_with(logprobs: list[dict[str, Any]], text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Responses answer whose one output text carries ``logprobs``, and its event stream."""
    ids = {"item_id": "m1", "output_index": 0, "content_index": 0}
    item = _message_item(text)
    item["content"][0]["logprobs"] = logprobs
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    return _response([item]), [
        {"type": "response.created", "response": _response([], "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": _message_item("", "in_progress")},
        {"type": "response.content_part.added", **ids, "part": empty},
        {"type": "response.output_text.delta", **ids, "delta": text, "logprobs": logprobs},
        {"type": "response.output_text.done", **ids, "text": text, "logprobs": logprobs},
        {"type": "response.content_part.done", **ids, "part": item["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": _response([item])},
    ]


def test_responses_stream_redaction_drops_the_tokens_of_every_repeat(
    harness: Harness, upstream: RawUpstream
) -> None:
    """The chosen tokens of a redacted text went out in content_part.done, output_item.done and
    response.completed (only the output_text.done event dropped them)."""
    tokens = [_token("Say "), _token(WORD), _token(".")]
    _, events = _responses_with(tokens, f"Say {WORD}.")
    text = _responses_stream(harness, upstream, events, tenant="redactor")
    assert WORD not in text and "[gone]" in text


def test_responses_alternatives_are_screened(harness: Harness, upstream: RawUpstream) -> None:
    answer, events = _responses_with(ALTERNATIVES, "Hi there.")
    assert WORD not in _responses_stream(harness, upstream, copy.deepcopy(events))
    redacted = _responses_stream(harness, upstream, copy.deepcopy(events), tenant="redactor")
    assert WORD not in redacted and "response.completed" in redacted
    upstream.answer_json(answer)
    for tenant in ("blocker", "redactor"):
        reply = harness.post("/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}, tenant=tenant)
        assert reply.status_code == 200 and WORD not in reply.text, tenant
    safe, events = _responses_with(SAFE_ALTERNATIVES, "Hi there.")
    kept = _responses_stream(harness, upstream, events, tenant="redactor")
    assert kept.count('"token": " you"') == 4  # .done, content_part.done, output_item.done, completed


@pytest.mark.parametrize("logprobs", [{"note": WORD}, WORD, [{"x": WORD}]])
def test_responses_stream_logprobs_of_another_shape_are_dropped(
    harness: Harness, upstream: RawUpstream, logprobs: Any
) -> None:
    _, events = _responses_with(logprobs, "Hi there.")
    text = _responses_stream(harness, upstream, events, tenant="redactor")
    assert WORD not in text and "Hi there." in text


def test_alternatives_that_spell_another_text_do_not_go_out_in_a_stream(
    harness: Harness, upstream: RawUpstream
) -> None:
    lp = {"content": [_token("Hi"), _token(" there.")], "refusal": None}
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "content": "Hello."}, logprobs=lp), _chunk({}, finish="stop"), "[DONE]",
    ], tenant="redactor", logprobs=True)  # fmt: skip
    assert "Hello." in text and " there." not in text


# --- redaction keeps JSON valid and bytes outside the redacted spans ---------------------------------------


def test_redacted_tool_arguments_keep_every_other_byte(harness: Harness, upstream: RawUpstream) -> None:
    args = '{"b":[1,2.50,"x"],  "a":"Say kaboom now.","c":"\\u00e9t\\u00e9"}'
    upstream.answer_json(_chat_answer(None, tool_calls=[
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}]))  # fmt: skip
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]}, "redactor")
    got = reply.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert WORD not in got
    cut = args.index('"Say kaboom now."')
    assert got.startswith(args[:cut]) and got.endswith(args[cut + len('"Say kaboom now."') :]), got
    assert json.loads(got)["b"] == [1, 2.5, "x"]


def test_redacted_stream_tool_arguments_keep_every_other_byte(
    harness: Harness, upstream: RawUpstream
) -> None:
    args = '{"b":[1,2.50],  "a":"Say kaboom now."}'
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": args[:12]}}
    more = {"index": 0, "function": {"arguments": args[12:]}}
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "tool_calls": [call]}), _chunk({"tool_calls": [more]}),
        _chunk({}, finish="tool_calls"), "[DONE]",
    ], tenant="redactor")  # fmt: skip
    pieces = [
        c["function"].get("arguments", "")
        for line in text.splitlines() if line.startswith("{")
        for choice in json.loads(line).get("choices", [])
        for c in choice.get("delta", {}).get("tool_calls", []) or []
    ]  # fmt: skip
    got = "".join(pieces)
    assert WORD not in got and got.startswith('{"b":[1,2.50],  "a":"'), got


# --- more shapes of answers --------------------------------------------------------------------------------


def test_streamed_content_as_a_list_of_parts(harness: Harness, upstream: RawUpstream) -> None:
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "content": [{"type": "text", "text": WORD}]}),
        _chunk({}, finish="stop"), "[DONE]",
    ])  # fmt: skip
    assert WORD not in text


@pytest.mark.parametrize("content", [{"text": WORD}, [[WORD]], [{"type": "text", "text": [WORD]}]])
def test_answer_content_of_an_odd_shape(harness: Harness, upstream: RawUpstream, content: Any) -> None:
    upstream.answer_json(_chat_answer(content))
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert WORD not in reply.text


@pytest.mark.parametrize(
    "field",
    [
        "reasoning",
        "reasoning_content",
    ],
)
def test_reasoning_fields_of_compatible_servers(harness: Harness, upstream: RawUpstream, field: str) -> None:
    upstream.answer_json(_chat_answer("Hi.", **{field: f"I will say {WORD}."}))
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert WORD not in reply.text
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", field: f"I will say {WORD}."}), _chunk({"content": "Hi."}),
        _chunk({}, finish="stop"), "[DONE]",
    ])  # fmt: skip
    assert WORD not in text


@pytest.mark.parametrize("words", [100, 126, 127, 128, 254, 255, 256, 300, 510, 511, 512, 1000])
def test_trigger_at_window_boundaries(harness: Harness, upstream: RawUpstream, words: int) -> None:
    content = "word " * words + WORD + " end"
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": content}]})
    assert reply.status_code == 400, words


# --- JSON a lenient parser reads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    ['{"q": "\\u006b\\u0061boom"', '\ufeff{"q": "\\u006b\\u0061boom"}', '{"q": "Steps:\\nkaboom"} trailing'],
    ids=["unterminated", "bom", "trailing-text"],
)
def test_invalid_json_arguments_are_read_with_escapes_decoded(
    harness: Harness, upstream: RawUpstream, args: str
) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}
    upstream.answer_json(_chat_answer(None, tool_calls=[call]))
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert "\\u006b\\u0061boom" not in reply.text and WORD not in reply.text
    streamed = _stream(harness, upstream, [
        _chunk({"role": "assistant", "tool_calls": [{"index": 0, **call}]}),
        _chunk({}, finish="tool_calls"), "[DONE]",
    ])  # fmt: skip
    assert "\\\\u006b\\\\u0061boom" not in streamed and WORD not in streamed


def test_duplicate_keys_inside_arguments_are_all_read(harness: Harness, upstream: RawUpstream) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q":"hi","q":"kaboom"}'}}
    upstream.answer_json(_chat_answer(None, tool_calls=[call]))
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert WORD not in reply.text


def test_split_across_messages_with_an_empty_one_between(harness: Harness, upstream: RawUpstream) -> None:
    parts = [{"type": "text", "text": ""}, {"type": "text", "text": "boom"}]
    messages = [
        {"role": "user", "content": "Say ka"},
        {"role": "user", "content": ""},
        {"role": "user", "content": parts},
    ]
    assert _post_chat(harness, {"messages": messages}).status_code == 400
    _clean_upstream(upstream)


def test_responses_word_split_across_two_text_parts(harness: Harness, upstream: RawUpstream) -> None:
    first = {"item_id": "m1", "output_index": 0, "content_index": 0}
    second = {"item_id": "m1", "output_index": 0, "content_index": 1}
    part = {"type": "output_text", "text": "", "annotations": []}
    text = _responses_stream(harness, upstream, [
        {"type": "response.created", "response": _response([], "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": _message_item("", "in_progress")},
        {"type": "response.content_part.added", **first, "part": part},
        {"type": "response.output_text.delta", **first, "delta": "Say ka"},
        {"type": "response.output_text.done", **first, "text": "Say ka"},
        {"type": "response.content_part.added", **second, "part": part},
        {"type": "response.output_text.delta", **second, "delta": "boom now."},
        {"type": "response.output_text.done", **second, "text": "boom now."},
        {"type": "response.completed", "response": _response([])},
    ])  # fmt: skip
    assert "boom now" not in text
    item = _message_item("Say ka")
    item["content"].append({"type": "output_text", "text": "boom now.", "annotations": []})
    upstream.answer_json(_response([item]))
    reply = harness.post("/v1/responses", {"model": "gpt-4o-mini", "input": "hi"})
    assert "boom now" not in reply.text


def test_streamed_tool_arguments_as_an_object(harness: Harness, upstream: RawUpstream) -> None:
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": {"q": WORD}}}
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "tool_calls": [call]}), _chunk({}, finish="tool_calls"), "[DONE]",
    ])  # fmt: skip
    assert WORD not in text
    upstream.answer_json(_chat_answer(None, tool_calls=[{k: v for k, v in call.items() if k != "index"}]))
    assert WORD not in _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]}).text


@pytest.mark.parametrize(
    "word", ["&#107;&#97;&#98;&#111;&#111;&#109;", "%6B%61%62%6F%6F%6D"], ids=["html", "percent"]
)
def test_markup_escapes(harness: Harness, upstream: RawUpstream, word: str) -> None:
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": f"Tell me about {word} now."}]})
    assert reply.status_code == 400, reply.text


def test_base64_encoded_request_is_blocked_and_redacted_run_never_reaches_the_upstream(
    harness: Harness, upstream: RawUpstream
) -> None:
    run = base64.b64encode(f"Explain how to build a {WORD} at home.".encode()).decode()
    content = f"Decode this and follow it: {run}"
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": content}]})
    assert reply.status_code == 400, reply.text
    upstream.answer_json(_chat_answer("Sure."))
    before = len(upstream.received)
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": content}]}, "redactor")
    assert reply.status_code == 200, reply.text
    (sent,) = upstream.received[before:]
    assert run not in json.dumps(sent.body)


@pytest.mark.parametrize(
    "halves",
    [("Tell me about k&#9", "7;boom now."), ("Tell me about %6B%6", "1boom now."), ("Decode: a2Fi", "b29t")],
    ids=["html-escape", "percent-escape", "base64"],
)
def test_an_encoding_split_across_text_parts_is_read_joined(
    harness: Harness, upstream: RawUpstream, halves: tuple[str, str]
) -> None:
    parts = [{"type": "text", "text": half} for half in halves]
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": parts}]})
    assert reply.status_code == 400, reply.text
    _clean_upstream(upstream)


def test_a_large_base64_document_is_decoded_and_screened(harness: Harness, upstream: RawUpstream) -> None:
    # ~9 KB: its base64 (~12,000 tokens) stays within the screening budget; the word is in a late window.
    document = ("The river runs past the mill. " * 300) + f"Then build the {WORD}."
    content = "Summarize this file: " + base64.b64encode(document.encode()).decode()
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": content}]})
    assert reply.status_code == 400, reply.text
    _clean_upstream(upstream)


def test_base64_encoded_answer_is_blocked(harness: Harness, upstream: RawUpstream) -> None:
    run = base64.b64encode(f"Step one of the {WORD}.".encode()).decode()
    upstream.answer_json(_chat_answer(f"Here you go: {run}"))
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}]})
    assert run not in reply.text


def test_responses_lane_reused_after_done(harness: Harness, upstream: RawUpstream) -> None:
    ids = {"item_id": "m1", "output_index": 0, "content_index": 0}
    text = _responses_stream(harness, upstream, [
        {"type": "response.created", "response": _response([], "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": _message_item("", "in_progress")},
        {"type": "response.output_text.delta", **ids, "delta": "Hi."},
        {"type": "response.output_text.done", **ids, "text": "Hi."},
        {"type": "response.output_text.delta", **ids, "delta": f"Say {WORD} now."},
        {"type": "response.output_text.done", **ids, "text": f"Say {WORD} now."},
        {"type": "response.completed", "response": _response([])},
    ])  # fmt: skip
    assert WORD not in text


@pytest.mark.parametrize(
    "odd",
    [
        {"id": "c", "object": "chat.completion.chunk", "choices": None, "delta": {"content": WORD}},
        {"model": "m", "message": {"role": "assistant", "content": WORD}, "done": False},
        {"type": "response.output_text.delta", "delta": WORD},
    ],
    ids=["top-level-delta", "ollama-native", "responses-event"],
)
def test_chunks_without_choices_carry_no_text(harness: Harness, upstream: RawUpstream, odd: Any) -> None:
    text = _stream(harness, upstream, [
        _chunk({"role": "assistant", "content": "hi"}), odd, _chunk({}, finish="stop"), "[DONE]",
    ])  # fmt: skip
    assert WORD not in text


def test_schema_sent_as_a_json_string(harness: Harness, upstream: RawUpstream) -> None:
    schema = json.dumps({"type": "object", "properties": {"q": {"type": "string", "description": WORD}}})
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    reply = _post_chat(harness, {"messages": [{"role": "user", "content": "hi"}], "tools": [tool]})
    assert reply.status_code == 400, reply.text
    _clean_upstream(upstream)

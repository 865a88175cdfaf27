"""The placement matrix: an unsafe text at every place the endpoint registry lists, in and out, streamed too.

Cases are generated from ``crest_proxy.endpoints`` (``tests/placements.py`` builds the body), so a new
row is tested as soon as it exists. Each goes through the real OpenAI SDK to a running proxy in front of
the fake upstream: under ``block`` the request is refused and the upstream is never called (or the answer
is replaced); under ``redact`` the text is replaced and neither the upstream nor the client gets one
unsafe byte (also inside JSON strings, decoded), and JSON fields stay valid JSON.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from crest_proxy import endpoints, wire
from crest_proxy.types import Direction
from crest_proxy.wire.patterns import find
from tests import placements
from tests.support import harness as harness_module
from tests.support.harness import Harness, key_of, running_proxy
from tests.support.upstream import FakeUpstream

TRIGGER = "kaboom"
PLACEHOLDER = "[gone]"  # the redactor tenant's placeholder
MODEL = "gpt-4o-mini"


@dataclass
class ScriptedUpstream(FakeUpstream):
    """The fake upstream, answering with a scripted body (or its stream) when one is set."""

    answer: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None

    def app(self) -> Any:
        inner = super().app()
        scripted = Starlette(routes=[Route("/v1/{path:path}", self._scripted, methods=["POST"])])

        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            chosen = scripted if scope["type"] == "http" and self.answer is not None else inner
            await chosen(scope, receive, send)

        return asgi

    async def _scripted(self, request: Request) -> Response:
        body = await self._record(request)
        if not body.get("stream"):
            return JSONResponse(self.answer)
        typed = request.url.path.endswith("/responses")
        frames = [_frame(event, typed) for event in self.events or []]
        frames += [] if typed else [b"data: [DONE]\n\n"]
        return StreamingResponse(iter(frames), media_type="text/event-stream")


def _frame(event: dict[str, Any], typed: bool) -> bytes:
    data = json.dumps(event)
    return (f"event: {event['type']}\ndata: {data}\n\n" if typed else f"data: {data}\n\n").encode()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, classifier: Any) -> Iterator[Harness]:
    tenants = {
        **harness_module.TENANTS,
        "tokens": {"inbound": {"token_inputs": "allow"}},
        "nomedia": {"inbound": {"media_inputs": "block"}},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness_module, "TENANTS", tenants)
        tmp: Path = tmp_path_factory.mktemp("matrix")
        with running_proxy(tmp, classifier, upstream=ScriptedUpstream()) as running:
            yield running
            for client in _CLIENTS.values():
                client.close()
            _CLIENTS.clear()


@pytest.fixture
def upstream(harness: Harness) -> Iterator[ScriptedUpstream]:
    fake = harness.upstream
    assert isinstance(fake, ScriptedUpstream)
    yield fake
    fake.answer, fake.events = None, None


# --- cases from the registry ---------------------------------------------------------------------------

TEXT_ROWS = [r for r in endpoints.FIELDS if r.kind not in ("tokens", "media")]
INBOUND = [r for r in TEXT_ROWS if r.direction is Direction.INBOUND and not r.stream]
OUTBOUND = [r for r in TEXT_ROWS if r.direction is Direction.OUTBOUND and not r.stream]
STREAMED = [r for r in TEXT_ROWS if r.stream] + [r for r in OUTBOUND if r.endpoint == "responses"]
STREAMING = {e.name for e in endpoints.ENDPOINTS if e.stream != "none"}


def _ids(rows: list[endpoints.TextField]) -> list[str]:
    return [row.id for row in rows]


_CLIENTS: dict[tuple[str, str], openai.OpenAI] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    """The cached SDK clients hold pooled sockets: close them with the module, not at garbage collection
    (a socket closed by the collector warns in whichever test happens to run then)."""
    yield
    for client in _CLIENTS.values():
        client.close()
    _CLIENTS.clear()


def _client(proxy_url: str, tenant: str) -> openai.OpenAI:
    """One SDK client per tenant for the whole module (building one per case costs more than the call)."""
    key = (proxy_url, tenant)
    if key not in _CLIENTS:
        _CLIENTS[key] = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key=key_of(tenant), max_retries=0)
    return _CLIENTS[key]


def _call(client: openai.OpenAI, endpoint: str, body: dict[str, Any]) -> Any:
    """The SDK method for ``endpoint``, called with ``body`` (unknown top-level keys go as extra_body)."""
    resource = {
        "chat.completions": client.chat.completions,
        "completions": client.completions,
        "responses": client.responses,
        "embeddings": client.embeddings,
    }[endpoint]
    return resource.create(model=MODEL, **body)


def _unsafe(strings: list[str]) -> list[str]:
    return [s for s in strings if TRIGGER in s.lower()]


def _streamed(result: Any) -> list[dict[str, Any]]:
    """Every event or chunk of an SDK stream, as JSON."""
    # warnings=False: the SDK's typed unions warn when an item's status is not one its model lists.
    return [event.model_dump(mode="json", warnings=False) for event in result]


# --- the registry itself -------------------------------------------------------------------------------


@pytest.mark.parametrize("row", INBOUND + OUTBOUND, ids=_ids(INBOUND + OUTBOUND))
def test_every_row_is_placed_where_its_pattern_finds_it(row: endpoints.TextField) -> None:
    body = placements.place(row, placements.leaf(row))
    read = wire.request_texts if row.direction is Direction.INBOUND else wire.response_texts
    found = [s for s in read(row.endpoint, body) if s.field == row.id and TRIGGER in s.text]
    assert found, f"{row.id}: the generated body does not put the text there: {body}"


# --- inbound -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", INBOUND, ids=_ids(INBOUND))
def test_inbound_block_never_reaches_the_upstream(
    harness: Harness, upstream: ScriptedUpstream, row: endpoints.TextField
) -> None:
    before = len(upstream.received)
    with pytest.raises(openai.BadRequestError) as caught:
        _call(
            _client(harness.proxy_url, "blocker"), row.endpoint, placements.place(row, placements.leaf(row))
        )
    assert caught.value.code == "content_policy_violation"
    assert len(upstream.received) == before


CASES = [(row, False) for row in INBOUND] + [(r, True) for r in INBOUND if r.endpoint in STREAMING]


@pytest.mark.parametrize(("row", "stream"), CASES, ids=[f"{r.id} stream={s}" for r, s in CASES])
def test_inbound_redact_sends_no_unsafe_byte_upstream(
    harness: Harness, upstream: ScriptedUpstream, row: endpoints.TextField, stream: bool
) -> None:
    body = placements.place(row, placements.leaf(row))
    result = _call(
        _client(harness.proxy_url, "redactor"), row.endpoint, {**body, "stream": True} if stream else body
    )
    if stream:
        _streamed(result)
    sent = upstream.last.body
    assert _unsafe(placements.strings_in(sent)) == []
    (match,) = find(sent, row.path)
    if row.kind == "data_url":  # the file is still a valid data URL; its decoded text is redacted
        header, payload = match.value.split(",", 1)
        assert header == "data:text/plain;base64"
        text = base64.b64decode(payload, validate=True).decode()
        assert TRIGGER not in text.lower() and PLACEHOLDER in text
        return
    assert any(PLACEHOLDER in s for s in placements.strings_in(sent))
    if row.kind == "json" and isinstance(match.value, str):  # rewritten strings only, re-encoded
        assert json.loads(match.value).keys() == {"q"}


# --- outbound, whole answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("row", OUTBOUND, ids=_ids(OUTBOUND))
@pytest.mark.parametrize("tenant", ["blocker", "redactor"])
def test_outbound_answer_reaches_the_client_screened(
    harness: Harness, upstream: ScriptedUpstream, row: endpoints.TextField, tenant: str
) -> None:
    upstream.answer = placements.place(row, placements.leaf(row))
    client = _client(harness.proxy_url, tenant)
    raw = _call(client.with_raw_response, row.endpoint, placements.request_for(row.endpoint))
    got = json.loads(raw.http_response.text)
    assert _unsafe(placements.strings_in(got)) == []
    if tenant == "blocker":
        finished = [c.get("finish_reason") for c in got.get("choices", [])]
        assert finished == ["content_filter"] or got.get("status") == "incomplete"
    elif row.kind == "alternatives":  # tokens cannot be rewritten: the logprobs go, the answer stays
        assert not [m.value for m in find(got, row.path) if m.value]
        assert placements.SAFE in placements.strings_in(got)
    else:
        assert any(PLACEHOLDER in s for s in placements.strings_in(got))


# --- outbound, streamed --------------------------------------------------------------------------------


def _stream_script(row: endpoints.TextField) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The answer placing ``row``'s text, and the stream the upstream sends for it."""
    if row.endpoint == "responses":
        answer = placements.place(row, placements.leaf(row))
        return answer, placements.response_events(answer)
    pattern = row.path.replace("choices[*].delta.", "choices[*].message.")
    if row.endpoint == "completions":
        answer = placements.place(row, placements.leaf(row))
        return answer, placements.completion_chunks(answer)
    answer = placements.place(row, placements.leaf(row), pattern=pattern)
    return answer, placements.chat_chunks(answer)


@pytest.mark.parametrize("row", STREAMED, ids=_ids(STREAMED))
@pytest.mark.parametrize("tenant", ["blocker", "redactor"])
def test_outbound_stream_reaches_the_client_screened(
    harness: Harness, upstream: ScriptedUpstream, row: endpoints.TextField, tenant: str
) -> None:
    upstream.answer, upstream.events = _stream_script(row)
    request = {**placements.request_for(row.endpoint), "stream": True}
    events = _streamed(_call(_client(harness.proxy_url, tenant), row.endpoint, request))
    strings = placements.strings_in(events)
    assert _unsafe(strings) == []
    if tenant == "blocker":
        ends = [c.get("finish_reason") for e in events for c in e.get("choices", [])]
        assert "content_filter" in ends or any(e.get("type") == "response.incomplete" for e in events)
    elif row.kind == "alternatives":
        assert placements.SAFE in strings
    else:
        assert any(PLACEHOLDER in s for s in strings)


# --- token ids -----------------------------------------------------------------------------------------

TOKEN_ROWS = [r for r in endpoints.FIELDS if r.kind == "tokens"]


@pytest.mark.parametrize("row", TOKEN_ROWS, ids=_ids(TOKEN_ROWS))
def test_token_id_prompts_follow_the_policy_and_are_audited(
    harness: Harness, upstream: ScriptedUpstream, row: endpoints.TextField
) -> None:
    body = placements.place(row, [1, 2, 3])
    before = len(upstream.received)
    with pytest.raises(openai.BadRequestError) as caught:
        _call(_client(harness.proxy_url, "blocker"), row.endpoint, body)
    assert caught.value.code == "content_policy_violation" and "token" in caught.value.message
    assert len(upstream.received) == before
    _call(_client(harness.proxy_url, "tokens"), row.endpoint, body)  # inbound.token_inputs: allow
    assert upstream.last.body[row.path.split("[")[0]] == body[row.path.split("[")[0]]
    marked = [r for r in harness.records() if r.get("extra", {}).get("token_inputs")]
    assert {r["tenant"] for r in marked} >= {"blocker", "tokens"}


# --- images, audio, files: read by the model, not by the classifier -------------------------------------

MEDIA_ROWS = [r for r in endpoints.FIELDS if r.kind == "media"]


@pytest.mark.parametrize("row", MEDIA_ROWS, ids=_ids(MEDIA_ROWS))
def test_media_inputs_follow_the_policy_and_are_audited(
    harness: Harness, upstream: ScriptedUpstream, row: endpoints.TextField
) -> None:
    body = placements.place(row, placements.media(row))
    (match,) = find(body, row.path)
    where = wire.path_param(match.path)
    before = len(upstream.received)
    with pytest.raises(openai.BadRequestError) as caught:
        _call(_client(harness.proxy_url, "nomedia"), row.endpoint, body)
    assert caught.value.code == "content_policy_violation" and where in caught.value.message
    assert len(upstream.received) == before
    _call(_client(harness.proxy_url, "blocker"), row.endpoint, body)  # default: allowed, and said so
    (sent,) = find(upstream.last.body, row.path)
    assert sent.value == match.value
    noted = [r["tenant"] for r in harness.records() if where in r.get("extra", {}).get("media_inputs", [])]
    assert {"blocker", "nomedia"} <= set(noted)


def test_a_textual_inline_file_is_read_not_counted_as_media() -> None:
    (row,) = [r for r in MEDIA_ROWS if r.id.endswith("messages[*].content[*].file.file_data")]
    body = placements.place(row, placements.UNSAFE_FILE)
    reading = wire.read_body(row.endpoint, body)
    assert reading.media == [] and [s.text for s in reading.texts if TRIGGER in s.text]


# --- streamed tool calls: names at once, arguments whole and decoded ----------------------------------


def _tool_stream(arguments: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": arguments}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls", "logprobs": None}
    answer = {
        "id": "chatcmpl-t",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [choice],
    }
    return answer, placements.chat_chunks(answer)


def _tool_deltas(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for e in events for ch in e["choices"] for c in (ch["delta"].get("tool_calls") or [])]


@pytest.mark.parametrize("tenant", ["blocker", "redactor"])
def test_a_safe_streamed_tool_call_keeps_its_name_first_and_its_exact_bytes(
    harness: Harness, upstream: ScriptedUpstream, tenant: str
) -> None:
    raw = '{ "q":"Zürich\\nweather", "n" : [1,2] }'
    upstream.answer, upstream.events = _tool_stream(raw)
    request = {**placements.request_for("chat.completions"), "stream": True}
    calls = _tool_deltas(_streamed(_call(_client(harness.proxy_url, tenant), "chat.completions", request)))
    assert calls[0]["id"] == "call_1" and calls[0]["function"]["name"] == "lookup"
    assert "".join(c["function"].get("arguments") or "" for c in calls) == raw


def test_streamed_arguments_are_redacted_decoded_and_stay_valid_json(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.answer, upstream.events = _tool_stream('{"city": "Zürich", "q": "Steps: \\u006baboom now."}')
    request = {**placements.request_for("chat.completions"), "stream": True}
    calls = _tool_deltas(
        _streamed(_call(_client(harness.proxy_url, "redactor"), "chat.completions", request))
    )
    arguments = json.loads("".join(c["function"].get("arguments") or "" for c in calls))
    values = placements.strings_in(arguments)
    assert len(arguments) == 2 and _unsafe(values) == [] and any(PLACEHOLDER in v for v in values)


@pytest.mark.parametrize("key", ["token_inputs", "media_inputs"])
def test_unread_inputs_settings_are_validated_with_file_and_key(tmp_path: Path, key: str) -> None:
    from crest_proxy.errors import ConfigError
    from crest_proxy.policy.files import read_policy

    policy = tmp_path / "t.yaml"
    policy.write_text(
        "tenant: t\nkeys: ['sha256:" + "0" * 64 + "']\nupstream: {base_url: 'http://x/v1'}\n"
        f"inbound: {{{key}: maybe}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        read_policy(policy)
    assert str(policy) in str(caught.value) and f"inbound.{key}" in str(caught.value)
    assert "'block' or 'allow'" in str(caught.value)

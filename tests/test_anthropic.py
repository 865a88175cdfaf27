"""The Messages API end to end: the real Anthropic SDK -> crest-proxy -> a fake Anthropic upstream.

Covers authentication, headers, every inbound text field (block and redact: the upstream receives no
unsafe byte), outbound text / tool input / thinking, errors in Anthropic's shape, count_tokens, audit.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from crest_proxy import endpoints
from crest_proxy.classifier import CrestClassifier
from crest_proxy.types import Direction
from crest_proxy.wire import anthropic as wire
from crest_proxy.wire.patterns import find
from crest_proxy.wire.patterns import pattern_of as wire_path
from tests.anthropic_harness import UPSTREAM_KEY, AnthropicHarness, key_of, running_anthropic_proxy

MODEL = "claude-fake"
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def harness(
    tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier
) -> Iterator[AnthropicHarness]:
    with running_anthropic_proxy(tmp_path_factory.mktemp("anthropic"), classifier) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset(harness: AnthropicHarness) -> None:
    harness.fake.reset()


def create(harness: AnthropicHarness, tenant: str = "claude", **kwargs: Any) -> Any:
    with harness.client(tenant) as client:
        return client.messages.with_raw_response.create(
            model=kwargs.pop("model", MODEL), max_tokens=64, messages=kwargs.pop("messages", HELLO), **kwargs
        )


# --- the happy path, authentication, headers ---------------------------------------------------------------


def test_sdk_gets_the_upstream_message_and_both_directions_are_audited(harness: AnthropicHarness) -> None:
    raw = create(harness, extra_headers={"anthropic-beta": "tools-2024-04-04"})
    message = raw.parse()
    assert (message.content[0].text, message.stop_reason) == ("Hello from Claude.", "end_turn")
    sent = harness.fake.last
    assert sent.path == "/v1/messages" and sent.body["messages"] == HELLO
    assert sent.headers["x-api-key"] == UPSTREAM_KEY and "authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == harness.client().default_headers["anthropic-version"]
    assert sent.headers["anthropic-beta"] == "tools-2024-04-04"
    request_id = raw.headers["x-request-id"]
    assert raw.headers["request-id"] == request_id
    records = harness.records_for(request_id)
    assert [(r["endpoint"], r["direction"], r["action"]) for r in records] == [
        ("messages", "inbound", "allow"),
        ("messages", "outbound", "allow"),
    ]


def test_bearer_auth_works_and_an_openai_compatible_upstream_gets_a_bearer_key(
    harness: AnthropicHarness,
) -> None:
    with anthropic.Anthropic(base_url=harness.url, auth_token=key_of("compat"), max_retries=0) as client:
        message = client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    assert message.content[0].text == "Hello from Claude."
    assert harness.fake.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-api-key" not in harness.fake.last.headers


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "sk-wrong"}, {"authorization": "Basic abc"}])
def test_missing_or_wrong_keys_are_401_in_anthropics_shape(
    harness: AnthropicHarness, headers: dict[str, str]
) -> None:
    import httpx

    answer = httpx.post(
        f"{harness.url}/v1/messages",
        json={"model": MODEL, "max_tokens": 8, "messages": HELLO},
        headers={"anthropic-version": "2023-06-01", **headers},
    )
    assert answer.status_code == 401
    assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == "authentication_error"
    assert harness.fake.received == []


def test_sdk_raises_authentication_error_for_a_wrong_key(harness: AnthropicHarness) -> None:
    with (
        anthropic.Anthropic(base_url=harness.url, api_key="sk-nope", max_retries=0) as client,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    assert caught.value.body["error"]["type"] == "authentication_error"


async def test_async_sdk(harness: AnthropicHarness) -> None:
    async with harness.async_client() as client:
        message = await client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "a kaboom"}]
            )
    assert message.content[0].text == "Hello from Claude."


# --- inbound: every text field, block and redact ------------------------------------------------------------

TOOL = {
    "name": "lookup",
    "description": "Looks things up.",
    "input_schema": {"type": "object", "properties": {}},
}


def placed(text: str) -> dict[str, dict[str, Any]]:
    """One request per text field, each with ``text`` in that field and safe text everywhere else."""
    user = {"role": "user"}
    asked = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}],
    }

    def result(content: Any) -> list[dict[str, Any]]:
        return [
            asked,
            {**user, "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": content}]},
        ]

    def said(*blocks: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**user, "content": [*blocks, {"type": "text", "text": "Summarize."}]}]

    schema = {"type": "object", "properties": {"q": {"type": "string", "description": text}}}
    source = {"type": "text", "media_type": "text/plain", "data": text}
    document = {"type": "document", "source": source}
    blocks_doc = {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": text}]},
    }
    titled = {**document, "source": {**source, "data": "x"}, "title": text}
    thinking = {"type": "thinking", "thinking": text, "signature": "c2ln"}
    tool_use = {"type": "tool_use", "id": "t", "name": "n", "input": {"a": [{"b": text}]}}
    ok = {"type": "tool_result", "tool_use_id": "t", "content": "ok"}
    thought = {"role": "assistant", "content": [thinking, {"type": "text", "text": "Hi"}]}
    return {
        "system string": {"system": text, "messages": HELLO},
        "system block": {"system": [{"type": "text", "text": text}], "messages": HELLO},
        "user string": {"messages": [{**user, "content": text}]},
        "user text block": {"messages": [{**user, "content": [{"type": "text", "text": text}]}]},
        "tool_use input": {
            "messages": [{"role": "assistant", "content": [tool_use]}, {**user, "content": [ok]}]
        },
        "tool_use input key": {
            "messages": [
                {"role": "assistant", "content": [{**tool_use, "input": {text: 1}}]},
                {**user, "content": [ok]},
            ]
        },
        "tool_result string": {"messages": result(text)},
        "tool_result blocks": {"messages": result([{"type": "text", "text": text}])},
        "document text": {"messages": said(document)},
        "document blocks": {"messages": said(blocks_doc)},
        "document title": {"messages": said(titled)},
        "thinking": {"messages": [*HELLO, thought, {**user, "content": "Go on"}]},
        "tool description": {"messages": HELLO, "tools": [{**TOOL, "description": text}]},
        "schema description": {"messages": HELLO, "tools": [{**TOOL, "input_schema": schema}]},
    }


FIELDS = list(placed("x"))


@pytest.mark.parametrize("field", FIELDS)
def test_unsafe_text_in_every_field_is_blocked_before_the_upstream(
    harness: AnthropicHarness, field: str
) -> None:
    body = {"model": MODEL, "max_tokens": 8, **placed("How do I build a kaboom at home?")[field]}
    answer = harness.post(body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == {"type": "invalid_request_error", "message": "Blocked by policy."}
    assert "kaboom" not in answer.text
    assert harness.fake.received == []
    (record,) = harness.records_for(answer.headers["x-request-id"])
    assert (record["endpoint"], record["action"]) == ("messages", "block")


@pytest.mark.parametrize("field", FIELDS)
def test_email_in_every_field_is_redacted_and_the_upstream_never_sees_it(
    harness: AnthropicHarness, field: str
) -> None:
    body = {"model": MODEL, "max_tokens": 8, **placed("Write to ana@example.com please.")[field]}
    answer = harness.post(body, tenant="redactor")
    assert answer.status_code == 200, answer.text
    sent = harness.fake.last.body
    assert "@" not in json.dumps(sent)
    expected = json.loads(json.dumps(body).replace("ana@example.com", "[gone]"))
    assert sent == expected  # only the email changed, in place


def test_every_placement_field_is_extracted() -> None:
    for field, body in placed("needle").items():
        assert any(s.text == "needle" for s in wire.request_texts(body)), field


def covered(slots: list[Any], rows: tuple[Any, ...], body: dict[str, Any]) -> list[str]:
    """The slot paths no registry row reaches (a row's match is the slot, or holds it: json and schema)."""
    reached = [m.path for row in rows for m in find(body, row.path)]
    return [wire_path(s.path) for s in slots if not any(s.path[: len(p)] == p for p in reached)]


def test_every_text_found_is_a_registry_row_and_every_row_is_placed() -> None:
    rows = endpoints.ANTHROPIC_FIELDS
    inbound = tuple(r for r in rows if r.direction is Direction.INBOUND)
    used: set[str] = set()
    for field, body in placed("needle").items():
        assert covered(wire.request_texts(body), inbound, body) == [], field
        used |= {r.path for r in inbound if any(m.value for m in find(body, r.path))}
    missing = {r.path for r in inbound} - used
    # Rows for blocks the matrix does not place (citations, search results, nested tool-result documents).
    assert missing <= {
        "messages[*].content[*].citations[*].cited_text",
        "messages[*].content[*].citations[*].title",
        "messages[*].content[*].citations[*].document_title",
        "messages[*].content[type=document].source.content",
        "messages[*].content[type=document].context",
        "messages[*].content[type=search_result].content[*].text",
        "messages[*].content[type=tool_result|mcp_tool_result].content[*].source.data",
        "messages[*].content[type=tool_result|mcp_tool_result].content[*].title",
    }, missing  # fmt: skip
    answer = {"content": [{"type": "text", "text": "a"}, {"type": "tool_use", "input": {"k": ["v"]}}]}
    outbound = tuple(r for r in rows if r.direction is Direction.OUTBOUND and not r.stream)
    assert covered(wire.response_texts(answer), outbound, answer) == []


_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
_PDF = base64.b64encode(b"%PDF-1.4\n").decode()
MEDIA_MESSAGES = [
    {"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _PNG}},
        {"type": "text", "text": "What is in these?"},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/report.pdf"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Plain notes."}},
    ]},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "look", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": _PDF}},
    ]}]},
]  # fmt: skip
MEDIA_PLACES = [
    "messages[0].content[0].source",
    "messages[0].content[2].source",
    "messages[2].content[0].content[0].source",
]


def test_images_and_documents_follow_media_inputs_and_are_audited(harness: AnthropicHarness) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        create(harness, "nomedia", messages=MEDIA_MESSAGES)
    assert "inbound.media_inputs" in caught.value.message and MEDIA_PLACES[2] in caught.value.message
    assert harness.fake.received == []
    raw = create(harness, messages=MEDIA_MESSAGES)  # the default: forwarded unread, and said so
    assert harness.fake.last.body["messages"] == MEDIA_MESSAGES
    records = harness.records_for(raw.headers["x-request-id"])
    assert records and all(r["extra"]["media_inputs"] == MEDIA_PLACES for r in records)
    assert wire.media_inputs({"messages": HELLO}) == []


def test_roles_and_tool_calls_settings_apply_to_anthropic_slots() -> None:
    slots = wire.request_texts(placed("needle")["tool_use input"])
    assert [(s.role, s.kind) for s in slots if s.text == "needle"] == [("assistant", "tool_arguments")]
    slots = wire.request_texts(placed("needle")["tool_result string"])
    assert [(s.role, s.kind) for s in slots if s.text == "needle"] == [("tool", "tool_output")]


def test_refusal_style_answers_with_a_refusal_message(harness: AnthropicHarness) -> None:
    raw = create(harness, "refuser", messages=[{"role": "user", "content": "a kaboom please"}])
    message = raw.parse()
    assert (message.stop_reason, message.content[0].text) == ("refusal", "I can't help with that.")
    assert harness.fake.received == []


# --- outbound -----------------------------------------------------------------------------------------------


def test_unsafe_answer_text_ends_as_a_refusal(harness: AnthropicHarness) -> None:
    harness.fake.content = [{"type": "text", "text": "Sure: the kaboom is made like this."}]
    raw = create(harness)
    message = raw.parse()
    assert (message.stop_reason, [b.text for b in message.content]) == ("refusal", ["Blocked by policy."])
    assert "kaboom" not in raw.http_response.text
    outbound = harness.records_for(raw.headers["x-request-id"])[-1]
    assert (outbound["direction"], outbound["action"], outbound["endpoint"]) == (
        "outbound",
        "block",
        "messages",
    )


@pytest.mark.parametrize(
    "block",
    [
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"query": {"deep": ["a kaboom"]}}},
        {"type": "thinking", "thinking": "Maybe a zarquon would do.", "signature": "c2ln"},
    ],
)
def test_unsafe_tool_input_and_thinking_are_blocked(harness: AnthropicHarness, block: dict[str, Any]) -> None:
    harness.fake.content = [block, {"type": "text", "text": "Fine."}]
    raw = create(harness)
    assert raw.parse().stop_reason == "refusal"
    assert "kaboom" not in raw.http_response.text and "zarquon" not in raw.http_response.text


def test_answer_redaction_keeps_tool_input_json(harness: AnthropicHarness) -> None:
    harness.fake.content = [
        {"type": "text", "text": "Mail ana@example.com now."},
        {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {"to": ["ana@example.com"], "n": 2}},
    ]
    message = create(harness, "redactor").parse()
    assert message.content[0].text == "Mail [gone] now."
    assert message.content[1].input == {"to": ["[gone]"], "n": 2}


# --- errors, validation, models, count_tokens ---------------------------------------------------------------


@pytest.mark.parametrize(
    "status,kind,error",
    [
        (400, "invalid_request_error", anthropic.BadRequestError),
        (404, "not_found_error", anthropic.NotFoundError),
        (429, "rate_limit_error", anthropic.RateLimitError),
        (529, "overloaded_error", anthropic.InternalServerError),
    ],
)
def test_upstream_errors_pass_through_with_status_and_type(
    harness: AnthropicHarness, status: int, kind: str, error: type[Exception]
) -> None:
    harness.fake.status = status
    harness.fake.error = {"type": "error", "error": {"type": kind, "message": f"upstream says {kind}"}}
    with harness.client() as client, pytest.raises(error) as caught:
        client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    assert caught.value.body["error"]["type"] == kind  # type: ignore[attr-defined]


def test_upstream_credential_failure_is_a_502_that_does_not_blame_the_client(
    harness: AnthropicHarness,
) -> None:
    harness.fake.status = 401
    answer = harness.post({"model": MODEL, "max_tokens": 8, "messages": HELLO})
    assert answer.status_code == 502 and answer.json()["error"]["type"] == "api_error"
    assert UPSTREAM_KEY not in answer.text


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"max_tokens": 8, "messages": HELLO},
        {"model": MODEL, "messages": HELLO},
        {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": {"text": "a kaboom"}}]},
        {"model": MODEL, "max_tokens": 8, "messages": [{"role": "tool", "content": "x"}]},
        {"model": MODEL, "max_tokens": 8, "messages": HELLO, "system": {"text": "a kaboom"}},
        {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": [{"text": "a kaboom"}]}]},
    ],
)
def test_malformed_requests_are_400_invalid_request_errors(harness: AnthropicHarness, body: Any) -> None:
    answer = harness.post(body)
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"
    assert harness.fake.received == []


def test_deeply_nested_tool_input_is_refused_not_crashed(harness: AnthropicHarness) -> None:
    deep: Any = "a kaboom"
    for _ in range(200):
        deep = {"k": deep}
    block = {"type": "tool_use", "id": "t", "name": "n", "input": deep}
    answer = harness.post(
        {"model": MODEL, "max_tokens": 8, "messages": [{"role": "assistant", "content": [block]}]}
    )
    assert answer.status_code == 400 and harness.fake.received == []


def test_body_over_the_limit_is_413_request_too_large(harness: AnthropicHarness) -> None:
    answer = harness.post(
        {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "x" * 300_000}]}
    )
    assert answer.status_code == 413 and answer.json()["error"]["type"] == "request_too_large"


def test_model_allow_list_and_aliases(harness: AnthropicHarness) -> None:
    with harness.client("picky") as client:
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(model="claude-other", max_tokens=8, messages=HELLO)
        client.messages.create(model="fast", max_tokens=8, messages=HELLO)
    assert harness.fake.last.body["model"] == "claude-ok"


def test_count_tokens_is_screened_and_forwarded(harness: AnthropicHarness) -> None:
    with harness.client("redactor") as client:
        counted = client.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "Mail ana@example.com"}]
        )
    assert counted.input_tokens > 0
    assert harness.fake.last.path == "/v1/messages/count_tokens"
    assert harness.fake.last.body["messages"][0]["content"] == "Mail [gone]"
    with harness.client() as client, pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "a kaboom"}])
    assert len(harness.fake.received) == 1


def test_count_tokens_unsupported_upstream_is_404(harness: AnthropicHarness) -> None:
    harness.fake.count_tokens = False
    with harness.client() as client, pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model=MODEL, messages=HELLO)


def test_request_texts_leave_the_body_unchanged() -> None:
    body = placed("needle")["tool_use input"]
    before = copy.deepcopy(body)
    wire.request_texts(body)
    assert body == before


def test_metrics_name_the_endpoint_messages(harness: AnthropicHarness) -> None:
    import httpx

    create(harness)
    metrics = httpx.get(f"{harness.url}/metrics").text
    assert 'endpoint="messages"' in metrics and 'endpoint="/v1/messages"' in metrics


def test_a_client_without_anthropic_version_gets_the_default_sent_upstream(harness: AnthropicHarness) -> None:
    import httpx

    body = {"model": MODEL, "max_tokens": 8, "messages": HELLO}
    answer = httpx.post(f"{harness.url}/v1/messages", json=body, headers={"x-api-key": key_of("claude")})
    assert answer.status_code == 200
    assert harness.fake.last.headers["anthropic-version"] == "2023-06-01"

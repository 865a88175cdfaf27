"""Bad input never gets a 500 or a hang: property-based fuzzing of every endpoint, plus hand-picked cases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crest_proxy.audit.sink import MemoryAuditSink
from crest_proxy.classifier import CrestClassifier
from tests.support.harness import LoopbackClient, key_of, proxy_app

PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"]
LIMIT = 64 * 1024


def upstream_ok(request: httpx.Request) -> httpx.Response:
    """A fixed, valid upstream answer for whichever endpoint was called."""
    path = request.url.path
    if path.endswith("/embeddings"):
        return httpx.Response(200, json={"object": "list", "data": [], "model": "m", "usage": {}})
    if path.endswith("/responses"):
        return httpx.Response(
            200, json={"id": "r", "object": "response", "status": "completed", "output": []}
        )
    message = {"role": "assistant", "content": "ok"}
    choice = {"index": 0, "message": message, "text": "ok", "finish_reason": "stop"}
    return httpx.Response(
        200, json={"id": "c", "object": "chat.completion", "model": "m", "choices": [choice]}
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier) -> Iterator[LoopbackClient]:
    policy_dir = tmp_path_factory.mktemp("policies")
    transport, audit = httpx.MockTransport(upstream_ok), MemoryAuditSink()
    app, _ = proxy_app(
        policy_dir, "http://upstream.test", classifier, transport=transport, audit=audit, max_body_bytes=LIMIT
    )
    with LoopbackClient(app) as test_client:
        test_client.headers["authorization"] = f"Bearer {key_of('logger')}"
        yield test_client


def assert_openai_error(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """The response is an OpenAI-style error (with the expected status, if given)."""
    if status is not None:
        assert response.status_code == status, response.text
    body = response.json()
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and isinstance(error["code"], str)
    assert response.headers["x-request-id"]
    return error


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "developer", "bogus", 3])},
    optional={"content": json_values, "tool_calls": json_values, "name": json_values},
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"model": st.one_of(st.text(max_size=10), json_values)},
        optional={
            "messages": st.one_of(st.lists(message, max_size=4), json_values),
            "prompt": json_values,
            "input": json_values,
            "instructions": json_values,
            "n": json_values,
            "stream": st.one_of(st.just(False), json_values),
        },
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), body=bodies)
def test_arbitrary_json_bodies_never_cause_a_server_error(client: httpx.Client, path: str, body: Any) -> None:
    if isinstance(body, dict) and body.get("stream") is not False:
        body = {**body, "stream": False}  # streaming is fuzzed with the SSE tests
    response = client.post(path, content=json.dumps(body))
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_openai_error(response)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_cause_a_server_error(client: httpx.Client, path: str, raw: bytes) -> None:
    response = client.post(path, content=raw)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert_openai_error(response)


def test_invalid_utf8_is_a_clear_400(client: httpx.Client) -> None:
    error = assert_openai_error(client.post(PATHS[0], content=b'{"model": "m\xff\xfe"}'), 400)
    assert "UTF-8" in error["message"]


def test_deeply_nested_json_is_a_400_not_a_crash(client: httpx.Client) -> None:
    deep = "[" * 20_000 + "]" * 20_000  # under the body limit, far over the parser's recursion limit
    assert_openai_error(client.post(PATHS[0], content=deep), 400)
    nested = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi", "x": json.loads("[" * 500 + "]" * 500)}],
    }
    assert client.post(PATHS[0], content=json.dumps(nested)).status_code == 200


def test_missing_and_ill_typed_fields_name_the_param(client: httpx.Client) -> None:
    cases = [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 0}, "n"),
    ]
    for body, param in cases:
        error = assert_openai_error(client.post(PATHS[0], content=json.dumps(body)), 400)
        assert error["param"] == param, (body, error)


def test_empty_body_and_non_object_body(client: httpx.Client) -> None:
    assert_openai_error(client.post(PATHS[0], content=b""), 400)
    assert_openai_error(client.post(PATHS[0], content=b"[1, 2]"), 400)


def test_huge_message_list_within_the_limit_is_served(client: httpx.Client) -> None:
    messages = [{"role": "user", "content": f"m{i}"} for i in range(1200)]  # ~48 KB, under the limit
    assert client.post(PATHS[0], content=json.dumps({"model": "m", "messages": messages})).status_code == 200


def test_oversized_body_is_413_even_without_content_length(client: httpx.Client) -> None:
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * (LIMIT + 10)}]}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    assert_openai_error(client.post(PATHS[0], content=chunks()), 413)
    assert_openai_error(client.post(PATHS[0], content=big), 413)


def test_unknown_paths_and_wrong_methods(client: httpx.Client) -> None:
    assert assert_openai_error(client.get("/v1/unknown"), 404)["code"] == "unknown_url"
    assert_openai_error(client.post("/v1/unknown", content=b"{}"), 404)
    assert_openai_error(client.get("/v1/chat/completions"), 405)
    assert_openai_error(client.delete("/v1/embeddings"), 405)

"""A short schemathesis run (a few hundred requests) of the proxy over loopback against OpenAI's OpenAPI
description: valid and invalid requests to the endpoints it serves never get a 5xx or a reset connection.
``benchmarks/fuzz.py`` is the long run (10,000+ requests, the real CLI, hand-made cases)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crest_proxy.classifier import CrestClassifier
from tests.openapi_schemas import require_spec
from tests.support.harness import Harness, key_of, running_proxy

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

# (method path, generation mode) -> requests; the cheap-to-generate operations get most of them.
PLAN = {
    ("POST /completions", "positive"): 50, ("POST /completions", "negative"): 50,
    ("POST /embeddings", "positive"): 50, ("POST /embeddings", "negative"): 50,
    ("GET /models", "positive"): 20, ("GET /models", "negative"): 20,
    ("POST /chat/completions", "positive"): 15, ("POST /responses", "positive"): 10,
}  # fmt: skip


def _stream(endpoint: str) -> bytes:
    if endpoint == "responses":
        done = {"id": "r", "object": "response", "status": "completed", "output": []}
        events = [("response.created", {**done, "status": "in_progress"}), ("response.completed", done)]
        return b"".join(
            f"event: {name}\ndata: {json.dumps({'type': name, 'response': r})}\n\n".encode()
            for name, r in events
        )
    delta = {"delta": {"content": "Hi!"}} if endpoint == "chat/completions" else {"text": "Hi!"}
    chunk = {
        "id": "c",
        "object": "chunk",
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", **delta}],
    }
    return f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()


def upstream(request: httpx.Request) -> httpx.Response:
    """A valid answer (JSON or a stream) for whatever the proxy forwards."""
    endpoint = request.url.path.removeprefix("/v1/")
    if endpoint == "models":
        return httpx.Response(
            200, json={"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
        )
    body = json.loads(request.content)
    if body.get("stream") is True and endpoint != "embeddings":
        return httpx.Response(200, content=_stream(endpoint), headers={"content-type": "text/event-stream"})
    if endpoint == "embeddings":
        return httpx.Response(200, json={"object": "list", "data": [], "model": "m"})
    if endpoint == "responses":
        return httpx.Response(
            200, json={"id": "r", "object": "response", "status": "completed", "output": []}
        )
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "Hi!"},
        "text": "Hi!",
        "finish_reason": "stop",
    }
    return httpx.Response(
        200, json={"id": "c", "object": "chat.completion", "model": "m", "choices": [choice]}
    )


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier) -> Iterator[Harness]:
    with running_proxy(
        tmp_path_factory.mktemp("fuzz"), classifier, transport=httpx.MockTransport(upstream)
    ) as harness:
        yield harness


def _operations(spec: Path) -> dict[str, Any]:
    schema = schemathesis.openapi.from_path(str(spec)).include(path=[p.split()[1] for p, _ in PLAN])
    return {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())}


def _send_cases(operation: Any, mode: str, count: int, base_url: str, session: Any) -> Counter[str]:
    """Send ``count`` generated requests for ``operation``; their statuses (a 5xx fails at once)."""
    statuses: Counter[str] = Counter()
    auth = {"Authorization": f"Bearer {key_of('logger')}"}
    generation = (
        schemathesis.GenerationMode.POSITIVE if mode == "positive" else schemathesis.GenerationMode.NEGATIVE
    )

    @seed(14)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(operation.as_strategy(generation_mode=generation))
    def send(case: Any) -> None:
        answer = case.call(base_url=base_url, session=session, headers=auth, timeout=30)
        statuses[str(answer.status_code)] += 1
        assert answer.status_code < 500, (operation.path, mode, answer.status_code, answer.text[:300])

    send()
    return statuses


def test_schemathesis_requests_never_get_a_5xx(proxy: Harness) -> None:
    operations = _operations(require_spec())
    session = requests.Session()  # pooled: a reset after an error answer would show up as an exception
    statuses: Counter[str] = Counter()
    for (name, mode), count in PLAN.items():
        statuses += _send_cases(operations[name], mode, count, f"{proxy.proxy_url}/v1", session)
    assert sum(statuses.values()) >= 200, statuses
    assert {"200", "400"} <= set(statuses), statuses  # both valid and refused requests were exercised

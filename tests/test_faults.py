"""Faults: upstream failures map to clean errors; classifier failures follow on_error; all is audited."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from crest_proxy.audit.sink import MemoryAuditSink
from crest_proxy.classifier.protocol import Classifier
from crest_proxy.errors import ClassifierOverloadedError
from tests.support.classifiers import FakeClassifier, broken_classifier, safe_classifier
from tests.support.harness import TENANTS, LoopbackClient, key_of, proxy_app

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
OK = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}


def broken(failure: str) -> FakeClassifier:
    """A classifier whose backend raises, or hangs, or is overloaded."""
    if failure == "hang":
        return FakeClassifier(hang=True)
    if failure == "overload":
        return FakeClassifier(error=ClassifierOverloadedError("queue full (4096 texts waiting)"))
    return broken_classifier()


class Trickle(httpx.AsyncByteStream):
    """An upstream body that sends one byte every 50 ms, forever."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.05)
            yield b" "


def make_client(
    tmp_path: Path,
    handler: Callable[[httpx.Request], Any] | None,
    classifier: Classifier,
    **upstreams: Any,
) -> tuple[LoopbackClient, MemoryAuditSink]:
    """A loopback client of a proxy whose upstream is ``handler`` (an httpx MockTransport).

    With no handler the proxy uses its default transport, so ``upstreams`` should set a real ``base_url``.
    """
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    audit = MemoryAuditSink()
    transport = None if handler is None else httpx.MockTransport(handler)
    app, _ = proxy_app(
        policy_dir, "http://upstream.test", classifier, transport=transport, audit=audit,
        upstreams=upstreams, classify_timeout_s=0.5,
    )  # fmt: skip
    return LoopbackClient(app), audit


def post(client: httpx.Client, tenant: str = "blocker", body: dict[str, Any] = CHAT) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        content=json.dumps(body),
        headers={"authorization": f"Bearer {key_of(tenant)}"},
    )


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (httpx.ConnectError("connection refused"), 502, "upstream_error"),
        (httpx.ConnectTimeout("connect timed out"), 504, "upstream_timeout"),
        (httpx.ReadTimeout("read timed out"), 504, "upstream_timeout"),
        (httpx.RemoteProtocolError("peer closed connection"), 502, "upstream_error"),
    ],
)
def test_upstream_transport_failures_are_mapped_and_audited(
    tmp_path: Path, exc: Exception, status: int, code: str
) -> None:
    client, audit = make_client(tmp_path, raising(exc), safe_classifier())
    with client:
        response = post(client)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    (record,) = audit.records
    assert record.request_id == response.headers["x-request-id"]
    assert record.action == "allow" and record.extra["upstream_error"] == code


def test_upstream_5xx_json_is_passed_through(tmp_path: Path) -> None:
    body = {"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}}
    client, audit = make_client(tmp_path, lambda r: httpx.Response(503, json=body), safe_classifier())
    with client:
        response = post(client)
    assert response.status_code == 503 and response.json() == body
    assert audit.records[0].upstream_status == 503


@pytest.mark.parametrize("content", [b"not json", b"[1, 2, 3]", b'{"truncated": '])
def test_invalid_upstream_json_is_a_502(tmp_path: Path, content: bytes) -> None:
    client, audit = make_client(tmp_path, lambda r: httpx.Response(200, content=content), safe_classifier())
    with client:
        response = post(client)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"
    assert [r.direction for r in audit.records] == ["inbound"]


def test_an_upstream_that_trickles_forever_is_cut_off_by_the_total_deadline(tmp_path: Path) -> None:
    client, audit = make_client(
        tmp_path,
        lambda r: httpx.Response(200, stream=Trickle()),
        safe_classifier(),
        blocker={"timeout": {"total": 1}},
    )
    with client:
        response = post(client)
    assert response.status_code == 504
    assert "1s" in response.json()["error"]["message"]
    assert audit.records[0].extra["upstream_error"] == "upstream_timeout"


class EventThenTrickle(httpx.AsyncByteStream):
    """One SSE event, then a space every 50 ms forever: bytes keep coming, but never another event."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = {
            **OK,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": "Hi. "}}],
        }
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        async for piece in Trickle():
            yield piece


def test_a_stream_that_trickles_without_events_is_cut_off_after_total_seconds(tmp_path: Path) -> None:
    client, audit = make_client(
        tmp_path,
        lambda r: httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=EventThenTrickle()
        ),
        safe_classifier(),
        blocker={"timeout": {"total": 1}},
    )
    with client:
        response = post(client, body={**CHAT, "stream": True})
    assert response.status_code == 200
    datas = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    first, last = json.loads(datas[0]), json.loads(datas[-1])
    assert first["choices"][0]["delta"]["content"] == "Hi. "  # what came before the stall was relayed
    assert last["error"]["code"] == "upstream_timeout" and "1s" in last["error"]["message"]
    outbound = [r for r in audit.records if r.direction == "outbound"]
    assert outbound and outbound[0].extra["outcome"] == "upstream_error"


def real_socket_upstream(tmp_path: Path, url: str) -> tuple[LoopbackClient, MemoryAuditSink]:
    """A proxy on its default upstream transport (aiohttp), pointed at ``url``, with a 0.5 s read timeout."""
    return make_client(tmp_path, None, safe_classifier(), blocker={"base_url": url, "timeout": {"read": 0.5}})


@contextmanager
def socket_server(reply: bytes | None) -> Iterator[str]:
    """A loopback TCP server that reads a request, then sends ``reply`` and hangs up (None: stays silent)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                if reply is None:
                    stop.wait(5)
                else:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        pytest.param(b"", 502, "upstream_error", id="hangs-up-without-answering"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n{", 502, "upstream_error", id="cut-body"),
        pytest.param(None, 504, "upstream_timeout", id="silent"),
    ],
)
def test_real_socket_failures_on_the_default_transport(
    tmp_path: Path, reply: bytes | None, status: int, code: str
) -> None:
    with socket_server(reply) as url:
        client, audit = real_socket_upstream(tmp_path, url)
        with client:
            response = post(client)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert audit.records[0].extra["upstream_error"] == code


def test_a_refused_connection_on_the_default_transport_is_a_502(tmp_path: Path) -> None:
    with socket_server(b"") as url:
        pass  # closed: nothing listens on that port any more
    client, audit = real_socket_upstream(tmp_path, url)
    with client:
        response = post(client)
    assert response.status_code == 502
    assert "could not be reached" in response.json()["error"]["message"]
    assert audit.records[0].extra["upstream_error"] == "upstream_error"


@pytest.mark.parametrize("failure", ["raise", "hang"])
def test_classifier_failure_fails_closed_by_default(tmp_path: Path, failure: str) -> None:
    calls: list[httpx.Request] = []
    client, audit = make_client(
        tmp_path, lambda r: calls.append(r) or httpx.Response(200, json=OK), broken(failure)
    )
    with client:
        response = post(client, "blocker")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "classifier_unavailable"
    assert calls == []
    (record,) = audit.records
    assert record.action == "block" and record.error


def test_classifier_overload_sheds_load_with_429(tmp_path: Path) -> None:
    client, audit = make_client(tmp_path, lambda r: httpx.Response(200, json=OK), broken("overload"))
    with client:
        response = post(client, "blocker")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "classifier_overloaded"
    assert "ClassifierOverloadedError" in audit.records[0].error


def test_classifier_failure_fails_open_when_the_policy_says_so(tmp_path: Path) -> None:
    assert TENANTS["failopen"]["on_error"] == "allow"
    client, audit = make_client(tmp_path, lambda r: httpx.Response(200, json=OK), broken("raise"))
    with client:
        response = post(client, "failopen")
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "hi"
    inbound, outbound = audit.records
    assert inbound.action == "allow" and "bad allocation" in inbound.error
    assert outbound.error is not None


def test_rules_are_still_recorded_when_the_classifier_is_down(tmp_path: Path) -> None:
    client, audit = make_client(tmp_path, lambda r: httpx.Response(200, json=OK), broken("raise"))
    body = {"model": "m", "messages": [{"role": "user", "content": "mail me: ana@example.com"}]}
    secret = {"model": "m", "messages": [{"role": "user", "content": "sk-" + "a" * 30}]}
    with client:
        assert post(client, "blocker", secret).status_code == 503  # fail-closed: nothing passes unscreened
        assert post(client, "failopen", body).status_code == 200
    assert audit.records[0].rules == ("openai_key",)  # the rule still matched and is on record

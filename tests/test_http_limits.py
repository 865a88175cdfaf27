"""HTTP limits over real sockets (issue 14): stalled bodies, idle and flooding connections, oversized heads,
per-tenant shares, strict JSON, ``Connection: close`` on errors, and request ids the proxy mints itself."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from crest_proxy.classifier import CrestClassifier
from crest_proxy.policy.files import load_policies
from crest_proxy.server.app import create_app
from crest_proxy.server.connections import uvicorn_options
from crest_proxy.settings import ServerSettings
from tests.support.harness import key_of, write_policies
from tests.support.servers import serve
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_for

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}
LIMITS: dict[str, Any] = {
    "body_timeout_s": 2.0,
    "max_inflight_per_tenant": 3,
    "max_connections": 40,
    "header_timeout_s": 1.0,
    "keep_alive_s": 0.5,
    "max_header_bytes": 8192,
    "max_headers": 50,
}


class Proxy:
    """A running proxy (uvicorn with the connection limits) in front of a fake upstream."""

    def __init__(self, url: str, audit_path: Path, app: Any) -> None:
        self.url, self.audit_path, self.app = url, audit_path, app
        parsed = urlparse(url)
        self.address = (parsed.hostname or "127.0.0.1", parsed.port or 80)

    def records(self) -> list[dict[str, Any]]:
        """Every audit record written so far."""
        self.app.state.gateway.audit.flush_sync()
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line]

    def connect(self) -> socket.socket:
        """A raw TCP connection to the proxy."""
        sock = socket.create_connection(self.address, timeout=10)
        return sock


@contextmanager
def limited_proxy(tmp: Path, classifier: CrestClassifier, **overrides: Any) -> Iterator[Proxy]:
    """crest-proxy served the way ``serve`` serves it (``uvicorn_options``), with ``overrides`` applied."""
    with ExitStack() as stack:
        upstream_url = stack.enter_context(serve(FakeUpstream().app()))
        policy_dir = tmp / "policies"
        policy_dir.mkdir()
        environ = write_policies(policy_dir, upstream_url)
        audit_path = tmp / "audit.jsonl"
        settings = ServerSettings(policies_dir=policy_dir, audit_log=audit_path, **{**LIMITS, **overrides})
        app = create_app(
            settings,
            policies=load_policies(policy_dir, environ=environ),
            classifier=classifier,
            environ=environ,
        )
        url = stack.enter_context(serve(app, **uvicorn_options(settings)))
        yield Proxy(url, audit_path, app)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier) -> Iterator[Proxy]:
    with limited_proxy(tmp_path_factory.mktemp("limits"), classifier) as running:
        yield running


def head(path: str, tenant: str | None = "logger", length: int | None = None, extra: str = "") -> bytes:
    """A request line and headers (no body)."""
    lines = [f"POST {path} HTTP/1.1", "Host: proxy", "Content-Type: application/json"]
    if tenant:
        lines.append(f"Authorization: Bearer {key_of(tenant)}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body, read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head: {data!r}"
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_peer(sock: socket.socket, within_s: float = 10.0) -> bool:
    """True when the proxy closes ``sock`` within ``within_s`` (EOF or reset)."""
    sock.settimeout(within_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def assert_openai_error(body: bytes, code: str) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    return dict(error)


# --- strict JSON --------------------------------------------------------------------------------------

NOT_JSON = {
    "nan": b'{"model": "gpt-4o-mini", "temperature": NaN, "messages": []}',
    "infinity": b'{"model": "gpt-4o-mini", "temperature": Infinity, "messages": []}',
    "minus-infinity": b'{"model": "gpt-4o-mini", "temperature": -Infinity, "messages": []}',
    "out-of-range": b'{"model": "gpt-4o-mini", "temperature": 1e400, "messages": []}',
    "lone-surrogate": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "lone-surrogate-key": b'{"model": "gpt-4o-mini", "\\udfff": 1, "messages": []}',
    "huge-integer": b'{"model": "gpt-4o-mini", "seed": ' + b"9" * 4301 + b', "messages": []}',
}


@pytest.mark.parametrize("body", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_json_that_python_accepts_but_json_does_not_is_a_400_on_the_record(proxy: Proxy, body: bytes) -> None:
    answer = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {key_of('logger')}", "x-request-id": "mine-123"},
    )
    assert answer.status_code == 400
    error = assert_openai_error(answer.content, "invalid_json")
    assert error["type"] == "invalid_request_error"
    (record,) = [r for r in proxy.records() if r["request_id"] == answer.headers["x-request-id"]]
    assert record["error"] == "invalid_json" and record["extra"]["refused"] == 400
    assert record["tenant"] == "logger" and record["client_request_id"] == "mine-123"


def test_a_paired_surrogate_escape_is_fine(proxy: Proxy) -> None:
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    answer = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {key_of('logger')}"},
    )
    assert answer.status_code == 200


# --- request ids --------------------------------------------------------------------------------------


def test_the_proxy_mints_its_own_request_id_and_records_the_clients(proxy: Proxy) -> None:
    headers = {"authorization": f"Bearer {key_of('logger')}", "x-request-id": "shared-id-1"}
    first = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=headers)
    second = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=headers)
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2 and all(i.startswith("req_") for i in ids)  # never the client's, never reused
    records = [r for r in proxy.records() if r["request_id"] in ids]
    assert records and {r["client_request_id"] for r in records} == {"shared-id-1"}
    assert not [r for r in proxy.records() if r["request_id"] == "shared-id-1"]


# --- bodies, in-flight shares -------------------------------------------------------------------------


def test_a_stalled_body_gets_408_with_connection_close(proxy: Proxy) -> None:
    with proxy.connect() as sock:
        sock.sendall(head("/v1/chat/completions", length=500) + b'{"model": "gpt-4o-mini", ')
        status, headers, body = read_response(sock)
        assert status == 408 and headers["connection"] == "close"
        assert "did not arrive within 2s" in assert_openai_error(body, "request_timeout")["message"]
        assert closed_by_peer(sock)


def test_one_tenants_stalled_bodies_do_not_refuse_another_tenant(proxy: Proxy) -> None:
    stalled = [proxy.connect() for _ in range(3)]
    try:
        for sock in stalled:
            sock.sendall(head("/v1/chat/completions", tenant="logger", length=500) + b"{")
        seen: list[httpx.Response] = []

        def refused() -> bool:  # a cheap probe of the same tenant: refused once its three stalls count
            seen.append(
                httpx.get(f"{proxy.url}/v1/models", headers={"authorization": f"Bearer {key_of('logger')}"})
            )
            return seen[-1].status_code == 429

        wait_for(refused, timeout=1.5, what="the tenant's share to be used up")  # stalls last 2 s
        assert_openai_error(seen[-1].content, "tenant_overloaded")
        other = httpx.post(
            f"{proxy.url}/v1/chat/completions",
            json=CHAT,
            headers={"authorization": f"Bearer {key_of('redactor')}"},
        )
        assert other.status_code == 200
    finally:
        for sock in stalled:
            sock.close()


# --- Connection: close, no reset ----------------------------------------------------------------------


def test_an_unexpected_error_is_a_json_500_that_says_connection_close(
    tmp_path: Path, classifier: CrestClassifier
) -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        if b"explode" in request.content:
            raise RuntimeError("a bug in a transport")
        return httpx.Response(200, json={"id": "c", "object": "chat.completion", "choices": []})

    with limited_proxy(tmp_path, classifier) as running:
        running.app.state.gateway.upstreams._transport = httpx.MockTransport(upstream)
        with httpx.Client(
            base_url=running.url, headers={"authorization": f"Bearer {key_of('logger')}"}
        ) as client:
            failed = client.post("/v1/chat/completions", json={**CHAT, "model": "explode"})
            assert failed.status_code == 500 and failed.headers["connection"] == "close"
            assert_openai_error(failed.content, "internal_error")
            assert failed.headers["x-request-id"].startswith("req_")
            # The pooled client saw "close" and opens a fresh connection: no reset on the next request.
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_an_early_error_keeps_the_connection_usable(proxy: Proxy) -> None:
    with httpx.Client(base_url=proxy.url) as client:
        for _ in range(3):
            denied = client.post(
                "/v1/chat/completions", content=json.dumps(CHAT)
            )  # no key: 401 before the body
            assert denied.status_code == 401 and "connection" not in denied.headers
        answer = client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key_of('logger')}"}
        )
        assert answer.status_code == 200


# --- connections and heads ----------------------------------------------------------------------------


def test_a_flood_of_idle_sockets_cannot_lock_out_health_checks(proxy: Proxy) -> None:
    # Scaled from the 1,100 sockets: three times the cap of 40 (a cap the test can exceed quickly).
    idle = [proxy.connect() for _ in range(120)]
    try:
        for _ in range(3):
            health = httpx.get(f"{proxy.url}/healthz", timeout=5)
            assert health.status_code == 200
        assert closed_by_peer(idle[0], within_s=5)  # the longest-idle ones made room
    finally:
        for sock in idle:
            sock.close()


def test_a_connection_that_sends_nothing_is_closed(proxy: Proxy) -> None:
    with proxy.connect() as sock:
        assert closed_by_peer(sock, within_s=5)  # header_timeout_s is 1


def test_a_request_head_that_trickles_gets_408(proxy: Proxy) -> None:
    with proxy.connect() as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n")  # and never the blank line
        status, headers, body = read_response(sock)
        assert status == 408 and headers["connection"] == "close"
        assert_openai_error(body, "request_timeout")


def test_an_idle_kept_alive_connection_is_closed(proxy: Proxy) -> None:
    with proxy.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n")
        status, _, _ = read_response(sock)
        assert status == 200
        assert closed_by_peer(sock, within_s=5)  # keep_alive_s is 0.5


@pytest.mark.parametrize(
    "extra",
    ["".join(f"X-Pad-{i}: {i}\r\n" for i in range(60)), "X-Big: " + "a" * 9000 + "\r\n"],
    ids=["too-many-headers", "too-many-header-bytes"],
)
def test_oversized_request_heads_get_431(proxy: Proxy, extra: str) -> None:
    with proxy.connect() as sock:
        sock.sendall(head("/v1/chat/completions", length=2, extra=extra) + b"{}")
        status, headers, body = read_response(sock)
        assert status == 431 and headers["connection"] == "close"
        assert_openai_error(body, "headers_too_large")

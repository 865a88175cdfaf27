"""The fuzz benchmark's hand-made cases (issue 14): each one request or socket trick with the answer it must
get. ``run_cases`` returns one ``Row`` per case; the driver prints them as a table."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Row:
    """One case: what was sent, what it must get, what it got, how long it took."""

    case: str
    expected: str
    got: str
    ok: bool
    seconds: float


@dataclass(frozen=True)
class Target:
    """The proxy under test and the keys of its two tenants."""

    url: str
    key: str
    other_key: str

    @property
    def address(self) -> tuple[str, int]:
        """Host and port, for raw sockets."""
        parsed = urlparse(self.url)
        return parsed.hostname or "127.0.0.1", parsed.port or 80


def _post(t: Target, path: str, content: bytes, key: str | None = None, **headers: str) -> httpx.Response:
    auth = {"authorization": f"Bearer {key or t.key}", "content-type": "application/json"}
    return httpx.post(f"{t.url}/v1/{path}", content=content, headers={**auth, **headers}, timeout=120)


def _chat(model: str = MODEL, stream: bool = False) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello there"}], "stream": stream}
    return json.dumps(body).encode()


def _status(answer: httpx.Response) -> str:
    try:
        code = answer.json().get("error", {}).get("code")
    except ValueError:
        code = None
    return f"{answer.status_code} {code}" if code else str(answer.status_code)


def _stream_end(answer: httpx.Response) -> str:
    """The status and the error code of a stream's error event ("200 ok" when it ended cleanly)."""
    errors = [
        json.loads(line[6:])["error"]
        for line in answer.text.splitlines()
        if line.startswith('data: {"error"')
    ]
    return f"{answer.status_code} {errors[-1]['code']}" if errors else f"{answer.status_code} ok"


CLIENT_BODIES = {
    "NaN": b'{"model": "m", "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}',
    "Infinity": b'{"model": "m", "temperature": Infinity, "messages": [{"role": "user", "content": "hi"}]}',
    "-Infinity": b'{"model": "m", "temperature": -Infinity, "messages": [{"role": "user", "content": "hi"}]}',
    "1e400": b'{"model": "m", "temperature": 1e400, "messages": [{"role": "user", "content": "hi"}]}',
    "lone surrogate \\ud800": b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "4,301-digit integer": b'{"model": "m", "seed": ' + b"7" * 4301 + b', "messages": []}',
    "invalid UTF-8": b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "100,000 nested arrays": b"[" * 100_000 + b"]" * 100_000,
}

UPSTREAM_CASES = {  # model case -> (stream?, expected)
    "not-json": (False, "502 upstream_error"),
    "nan": (False, "502 upstream_error"),
    "out-of-range": (False, "502 upstream_error"),
    "lone-surrogate": (False, "502 upstream_error"),
    "array": (False, "502 upstream_error"),
    "wrong-shape": (False, "502 upstream_error"),
    "text-in-object": (False, "502 upstream_error"),
    "no-event-stream": (True, "502 upstream_error"),
    "answer-20mb": (False, "502 upstream_too_large"),
    "event-2mb": (True, "200 upstream_too_large"),
    "event-900kb": (True, "200 ok"),
}


def client_cases(t: Target) -> list[Row]:
    """Bodies Python's json takes but JSON does not, and other malformed bodies: 400 each."""
    rows = []
    for name, body in CLIENT_BODIES.items():
        started = time.perf_counter()
        got = _status(_post(t, "chat/completions", body))
        rows.append(
            Row(f"client sends {name}", "400 invalid_json", got, got == "400 invalid_json", _since(started))
        )
    return rows


def upstream_cases(t: Target) -> list[Row]:
    """Malformed, huge and key-echoing upstream answers."""
    rows = []
    for case, (stream, expected) in UPSTREAM_CASES.items():
        started = time.perf_counter()
        got = post_case(t, case, stream)
        rows.append(Row(f"upstream sends {case}", expected, got, got == expected, _since(started)))
    started = time.perf_counter()
    echoed = _post(t, "chat/completions", _chat("case:echo-key"))
    leaked = any(piece in echoed.text for piece in ("sk-bench-upstr", "bench-ups"))
    got = f"{echoed.status_code} {'key piece leaked' if leaked else 'masked'}"
    rows.append(Row("upstream echoes a key piece", "429 masked", got, got == "429 masked", _since(started)))
    return rows


def http_cases(t: Target) -> list[Row]:
    """Socket-level cases: stalled body and head, header floods, idle floods, tenant shares, ids."""
    cases: list[tuple[str, str, Callable[[Target], str]]] = [
        ("stalled request body", "408 close", _stalled_body),
        ("request head that never ends", "408 close", _stalled_head),
        (
            "101 request headers",
            "431 close",
            lambda t: _raw_status(t, _head(t, "".join(f"X-{i}: {i}\r\n" for i in range(101)))),
        ),
        (
            "40 KB request header",
            "431 close",
            lambda t: _raw_status(t, _head(t, "X-Big: " + "a" * 40_000 + "\r\n")),
        ),
        ("1,100 idle sockets, then /healthz", "200", _idle_flood),
        ("300 stalled bodies of one tenant, then another tenant", "429 / 200", _tenant_share),
        ("client x-request-id", "minted, not adopted", _request_id),
    ]
    rows = []
    for name, expected, probe in cases:
        started = time.perf_counter()
        got = probe(t)
        rows.append(Row(name, expected, got, got == expected, _since(started)))
    return rows


def _head(t: Target, extra: str = "", length: int = 2, key: str | None = None) -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {key or t.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _raw_status(t: Target, data: bytes) -> str:
    """Send ``data`` on a fresh socket; the answer's status and whether it says ``Connection: close``."""
    with socket.create_connection(t.address, timeout=60) as sock:
        sock.sendall(data)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed without an answer"
            head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").lower().split("\r\n")
    return lines[0].split()[1] + (" close" if "connection: close" in lines else "")


def _stalled_body(t: Target) -> str:
    return _raw_status(t, _head(t, length=500) + b'{"model": ')


def _stalled_head(t: Target) -> str:
    return _raw_status(t, b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n")


def _idle_flood(t: Target) -> str:
    idle = [socket.create_connection(t.address, timeout=10) for _ in range(1100)]
    try:
        return str(httpx.get(f"{t.url}/healthz", timeout=10).status_code)
    finally:
        for sock in idle:
            sock.close()


def _tenant_share(t: Target) -> str:
    stalled = [socket.create_connection(t.address, timeout=10) for _ in range(300)]
    try:
        for sock in stalled:
            sock.sendall(_head(t, length=500) + b"{")
        mine = _post(t, "chat/completions", _chat()).status_code
        other = _post(t, "chat/completions", _chat(), key=t.other_key).status_code
        return f"{mine} / {other}"
    finally:
        for sock in stalled:
            sock.close()


def _request_id(t: Target) -> str:
    answer = _post(t, "chat/completions", _chat(), **{"x-request-id": "someone-elses-id"})
    return "minted, not adopted" if answer.headers["x-request-id"].startswith("req_") else "adopted"


def post_case(t: Target, case: str, stream: bool) -> str:
    """Ask for the upstream's ``case:<case>`` answer; the status (and error code) the client got."""
    answer = _post(t, "chat/completions", _chat(f"case:{case}", stream))
    return _stream_end(answer) if stream and answer.status_code == 200 else _status(answer)


def wait_until_serving(t: Target, timeout_s: float = 300.0) -> None:
    """Wait until a small request is answered 200 again (the classifier has caught up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _post(t, "chat/completions", _chat()).status_code != 200:
        time.sleep(1)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def run_cases(t: Target) -> list[Row]:
    """Every hand-made case, in table order."""
    return [*client_cases(t), *upstream_cases(t), *http_cases(t)]

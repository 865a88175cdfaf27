"""The audit console over plain HTTP: sign-in and its rejections, filters, pages, request view, exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from crest_proxy.audit.chain import GENESIS, link
from crest_proxy.audit.record import record_to_json
from crest_proxy.cli import main
from crest_proxy.console import reader as reader_module
from crest_proxy.console.app import console_routes
from crest_proxy.console.filters import parse_filter
from crest_proxy.console.reader import FileReader
from crest_proxy.types import AuditRecord
from tests.support.servers import serve

KEY = "correct horse battery staple"
XSS = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
PAGES = ["/console/", "/console/decisions", "/console/decisions?action=block", "/console/requests/req-1"]
EXPORTS = ["/console/export.csv", "/console/export.jsonl?tenant=acme"]


def record(n: int, **changes: Any) -> AuditRecord:
    """Record ``n``: one a minute from 2026-11-22 07:00; every 10th blocked; every 7th from tenant beta."""
    fields: dict[str, Any] = dict(
        ts=f"2026-11-22T{7 + n // 60:02d}:{n % 60:02d}:00.000+00:00", request_id=f"req-{n}",
        tenant="beta" if n % 7 == 0 else "acme", direction="inbound" if n % 2 else "outbound",
        endpoint="chat.completions", model="gpt-4o-mini", action="block" if n % 10 == 0 else "allow",
        score=round(n / 200, 3), threshold=0.5, rules=("email",) if n % 3 == 0 else (),
        latency_ms=float(n % 20),
        upstream_status=200, text_sha256=None, language="de" if n % 5 == 0 else "en", windows=1, texts=1,
    )  # fmt: skip
    return AuditRecord(**{**fields, **changes})


def write_log(path: Path, records: list[AuditRecord]) -> list[str]:
    """Chain ``records`` into ``path`` as the proxy writes them; the lines written."""
    head, lines = GENESIS, []
    for r in records:
        linked = link(record_to_json(r), head)
        head = linked.hash
        lines.append(linked.text)
    path.write_text("".join(lines))
    return lines


HOSTILE = record(
    150, tenant=XSS, model=XSS, rules=("=HYPERLINK(\"http://evil\")", XSS), content=f"kept {XSS}",
    action="block", score=0.97, request_id="req-hostile", language="en",
)  # fmt: skip


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console") / "audit.jsonl"
    write_log(path, [record(n) for n in range(120)] + [HOSTILE])
    return path


@pytest.fixture(scope="module")
def url(log_path: Path) -> Iterator[str]:
    app = Starlette(routes=console_routes(FileReader([log_path]), KEY))
    with serve(app) as base:
        yield base


@contextmanager
def signed_in(url: str) -> Iterator[httpx.Client]:
    """An HTTP client signed in to the console at ``url``."""
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/console/login", data={"key": KEY})
        assert response.status_code == 303 and response.headers["location"] == "/console/"
        yield client


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with signed_in(url) as signed:
        yield signed


@pytest.mark.parametrize("path", PAGES)
def test_pages_without_a_session_redirect_to_the_login_form(url: str, path: str) -> None:
    response = httpx.get(url + path)
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert "req-" not in response.text


@pytest.mark.parametrize("path", EXPORTS)
def test_exports_without_a_session_are_401_with_no_data(url: str, path: str) -> None:
    for cookies in ({}, {"crest_console": "9999999999.abc.deadbeef"}, {"crest_console": "garbage"}):
        response = httpx.get(url + path, cookies=cookies)
        assert response.status_code == 401 and "req-" not in response.text


def test_a_wrong_key_gets_the_login_form_again_and_no_cookie(url: str) -> None:
    for key in ("", "wrong", KEY + " ", KEY.upper()):
        response = httpx.post(url + "/console/login", data={"key": key})
        assert response.status_code == 401
        assert "set-cookie" not in response.headers and "not the admin key" in response.text
        assert "req-" not in response.text


def test_the_session_cookie_is_httponly_strict_and_scoped(url: str) -> None:
    response = httpx.post(url + "/console/login", data={"key": KEY})
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback; https adds it
    assert KEY not in cookie


async def test_the_cookie_is_secure_over_https(log_path: Path) -> None:
    app = Starlette(routes=console_routes(FileReader([log_path]), KEY))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://console.example") as client:
        response = await client.post("/console/login", data={"key": KEY})
    assert response.status_code == 303 and "; Secure" in response.headers["set-cookie"]


def test_a_bad_since_on_the_overview_is_a_400(client: httpx.Client) -> None:
    response = client.get("/console/?since=<b>soon</b>")
    assert response.status_code == 400 and "since:" in response.text and "<b>soon" not in response.text


def test_repeated_wrong_keys_are_throttled_per_address(log_path: Path) -> None:
    from crest_proxy.console.auth import Throttle

    throttle = Throttle(limit=3, window_s=60)
    for t in (0.0, 1.0, 2.0):
        assert not throttle.blocked("a", now=t)
        throttle.failed("a", now=t)
    assert throttle.blocked("a", now=3.0) and not throttle.blocked("b", now=3.0)
    assert not throttle.blocked("a", now=61.0)  # the window has passed
    app = Starlette(routes=console_routes(FileReader([log_path]), KEY))
    with serve(app) as base, httpx.Client(base_url=base) as client:
        codes = [client.post("/console/login", data={"key": f"guess-{i}"}).status_code for i in range(11)]
        assert codes == [401] * 10 + [429]
        refused = client.post("/console/login", data={"key": KEY})  # even the right key, for a while
        assert refused.status_code == 429 and "set-cookie" not in refused.headers


def test_a_login_from_another_origin_is_refused(url: str) -> None:
    response = httpx.post(
        url + "/console/login", data={"key": KEY}, headers={"origin": "https://evil.example"}
    )
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_signing_out_clears_the_cookie(client: httpx.Client) -> None:
    response = client.post("/console/logout")
    assert response.status_code == 303 and "Max-Age=0" in response.headers["set-cookie"]
    assert client.get("/console/decisions").status_code == 303


def test_pages_forbid_scripts_and_framing(client: httpx.Client) -> None:
    response = client.get("/console/decisions")
    policy = response.headers["content-security-policy"]
    assert (
        "default-src 'none'" in policy and "script-src" not in policy and "frame-ancestors 'none'" in policy
    )


def test_overview_draws_charts_with_text_alternatives(client: httpx.Client) -> None:
    response = client.get("/console/", params={"since": "2026-11-22"})
    assert response.status_code == 200
    html = response.text
    assert html.count('role="img"') == 5 and "<title id=" in html and "<desc id=" in html
    assert "121 decisions since" in html
    assert '<th scope="col">Language</th>' in html


def test_decisions_filter_by_every_field(client: httpx.Client) -> None:
    cases = {
        "request_id=req-42": {"req-42"},
        "tenant=beta&action=block": {f"req-{n}" for n in range(120) if n % 70 == 0},
        "language=de&direction=inbound": {f"req-{n}" for n in range(120) if n % 5 == 0 and n % 2},
        "rule=email&max_score=0.05": {f"req-{n}" for n in range(11) if n % 3 == 0},
        "min_score=0.55&until=2026-11-22T08:55": {f"req-{n}" for n in range(110, 115)} | set(),
        "since=2026-11-22T08:58&tenant=acme": {"req-118"},  # req-119 is tenant beta
    }
    for query, expected in cases.items():
        html = client.get("/console/decisions?" + query).text
        shown = {part.split('"')[0] for part in html.split('href="/console/requests/')[1:]}
        assert shown == expected, query


def test_a_bad_filter_is_a_400_that_names_the_parameter(client: httpx.Client) -> None:
    for query, name in (("action=nuke", "action"), ("min_score=2", "min_score"), ("since=yesterday", "since"),
                        ("cursor=../../etc", "cursor")):  # fmt: skip
        response = client.get("/console/decisions?" + query)
        assert response.status_code == 400 and f"{name}:" in response.text


def test_pages_follow_cursors_newest_first_without_gaps(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "_BLOCK", 300)  # many block boundaries, inside lines too
    seen, query = [], "/console/decisions?tenant=acme"
    while query:
        html = client.get(query).text
        seen += [part.split('"')[0] for part in html.split('href="/console/requests/')[1:]]
        nxt = (
            html.split('rel="next"')[0].rsplit('href="', 1)[-1].split('"')[0]
            if 'rel="next"' in html
            else None
        )
        query = nxt.replace("&amp;", "&") if nxt else ""
    expected = [f"req-{n}" for n in reversed(range(120)) if n % 7]
    assert seen == expected


def test_reader_pages_match_a_full_scan(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_module, "_BLOCK", 97)
    reader, cursor, ids = FileReader([log_path]), None, []
    while True:
        page = reader.page(parse_filter({"direction": "inbound"}), cursor, 7)
        ids += [r["request_id"] for r in page.records]
        if not (cursor := page.next_cursor):
            break
    assert ids == [f"req-{n}" for n in reversed(range(120)) if n % 2]


def test_a_page_that_reads_its_budget_hands_back_a_cursor(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "_BLOCK", 512)
    monkeypatch.setattr(reader_module, "SCAN_BUDGET", 2048)  # about 4 lines parsed per page
    reader, cursor, pages, found = FileReader([log_path]), None, 0, []
    while True:
        page = reader.page(parse_filter({"language": "de", "max_score": "0.1"}), cursor, 50)
        pages, found = pages + 1, found + [r["request_id"] for r in page.records]
        if not (cursor := page.next_cursor):
            break
    assert pages > 10 and found == [f"req-{n}" for n in (20, 15, 10, 5, 0)]


def test_a_request_page_reads_back_only_its_span(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_module, "_BLOCK", 256)
    path = tmp_path / "audit.jsonl"
    same = {"request_id": "req-x", "tenant": "acme"}
    records = [record(0, ts="2026-11-22T03:00:00.000+00:00", **same)]  # 4 h older: another life of the id
    records += [record(n) for n in range(1, 60)] + [record(60, ts="2026-11-22T06:40:00.000+00:00", **same)]
    records += [record(n) for n in range(61, 100)] + [record(100, direction="outbound", **same)]
    write_log(path, records)
    found = FileReader([path]).request("req-x")
    assert [f.record["ts"][11:16] for f in found] == ["06:40", "08:40"]


def test_a_since_filter_stops_reading_at_older_blocks(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "_BLOCK", 512)
    page = FileReader([log_path]).page(
        parse_filter({"since": "2026-11-22T08:50", "tenant": "nobody"}), None, 50
    )
    assert page.records == () and page.next_cursor is None
    assert page.scanned_bytes < log_path.stat().st_size / 4


def test_hostile_names_and_content_are_escaped_everywhere(client: httpx.Client) -> None:
    for path in ("/console/decisions", "/console/requests/req-hostile", "/console/?since=2026-11-22"):
        html = client.get(path).text
        assert "<script>" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;" in html, path
    assert "kept &lt;script&gt;" in client.get("/console/requests/req-hostile").text


def test_the_request_page_shows_scores_against_thresholds_and_chain_status(client: httpx.Client) -> None:
    html = client.get("/console/requests/req-hostile").text
    assert "0.970000</span> vs threshold 0.500 (at or over the threshold)" in html
    assert "line hash matches" in html and "Upstream status" in html and "Windows" in html


def test_an_unknown_request_is_a_404_page(client: httpx.Client) -> None:
    response = client.get("/console/requests/nope")
    assert response.status_code == 404 and "No decision records" in response.text


def test_a_changed_line_shows_a_hash_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_log(path, [record(1), record(2)])
    path.write_text(lines[0].replace('"tenant":"acme"', '"tenant":"evil"') + lines[1])
    app = Starlette(routes=console_routes(FileReader([path]), KEY))
    with serve(app) as base, signed_in(base) as client:
        assert "LINE HASH MISMATCH" in client.get("/console/requests/req-1").text


def test_csv_export_follows_the_filter_and_defuses_formulas(client: httpx.Client) -> None:
    response = client.get("/console/export.csv?action=block")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["request_id"] for r in rows] == ["req-hostile", *[f"req-{n}" for n in range(110, -1, -10)]]
    assert rows[0]["rules"].startswith("'=HYPERLINK") and rows[0]["tenant"] == XSS


def test_jsonl_export_is_the_lines_as_written(client: httpx.Client, log_path: Path) -> None:
    body = client.get("/console/export.jsonl?tenant=beta").text
    written = {json.loads(x)["request_id"]: x for x in log_path.read_text().splitlines()}
    lines = body.splitlines()
    assert len(lines) == 18 and all(written[json.loads(x)["request_id"]] == x for x in lines)


def test_serve_mounts_the_console_only_with_an_admin_key(tmp_path: Path, classifier: Any) -> None:
    from tests.support.harness import running_proxy

    (tmp_path / "a").mkdir()
    with running_proxy(tmp_path / "a", classifier) as h:
        assert httpx.get(h.proxy_url + "/console/login").status_code == 404
    (tmp_path / "b").mkdir()
    with running_proxy(tmp_path / "b", classifier, admin_key=KEY) as h:
        h.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}])
        h.audit.flush_sync()
        assert httpx.get(h.proxy_url + "/console/decisions").headers["location"] == "/console/login"
        with signed_in(h.proxy_url) as client:
            html = client.get("/console/decisions?tenant=blocker").text
        assert "blocker" in html and "/console/requests/" in html


def test_console_command_refuses_to_run_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CREST_PROXY_ADMIN_KEY", raising=False)
    (tmp_path / "a.jsonl").write_text("")
    assert main(["console", "--audit-log", str(tmp_path / "a.jsonl")]) == 2
    assert "admin key" in capsys.readouterr().err
    monkeypatch.setenv("CREST_PROXY_ADMIN_KEY", KEY)
    assert main(["console", "--audit-log", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such audit log file" in capsys.readouterr().err


def test_console_command_serves_the_console_over_archived_files(log_path: Path, tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    from tests.support.waiting import wait_for

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "CONSOLE_KEY": KEY}
    command = [sys.executable, "-m", "crest_proxy", "console", "--audit-log", str(log_path),
               "--port", str(port), "--admin-key-env", "CONSOLE_KEY"]  # fmt: skip
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE) as process:
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _answers(base + "/console/login"), timeout=30, what="the console to listen")
            assert httpx.get(base + "/").headers["location"] == "/console/"
            with signed_in(base) as client:
                assert "req-119" in client.get("/console/decisions").text
        finally:
            process.terminate()
            process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False

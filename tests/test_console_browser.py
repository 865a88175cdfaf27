"""The audit console in a real browser (headless Chromium): sign in, filter to a blocked request, open it,
export; hostile names never run as script; the layout fits a phone-width window. Screenshots are saved."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from crest_proxy.console.app import console_routes
from crest_proxy.console.reader import FileReader
from tests.support.browser import browser, keep_screenshot, skip_without_chromium
from tests.support.harness import Harness, running_proxy
from tests.support.servers import serve
from tests.test_console import record as make_record
from tests.test_console import write_log

pytestmark = skip_without_chromium()

KEY = "browser-admin-key-0123"
XSS = "<img src=x onerror=alert(document.domain)>"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, classifier: Any) -> Iterator[Harness]:
    """A real proxy with the console on, and a few decisions in its audit log (one blocked)."""
    with running_proxy(tmp_path_factory.mktemp("console-browser"), classifier, admin_key=KEY) as h:
        client = h.client("blocker")
        for text in ("hello there", "what is the capital of France?"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        h.client("redactor").chat.completions.create(
            model=XSS, messages=[{"role": "user", "content": f"mail me at a@b.example {XSS}"}]
        )
        blocked = h.post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": "how to make a kaboom"}]})  # fmt: skip
        assert blocked.status_code == 400
        h.audit.flush_sync()
        h.blocked_id = blocked.headers["x-request-id"]  # type: ignore[attr-defined]
        yield h


def no_dialogs(page: Any) -> list[str]:
    """Record any alert/confirm a page opens (an XSS payload that ran would open one)."""
    opened: list[str] = []
    page.on("dialog", lambda d: (opened.append(d.message), d.dismiss()))
    return opened


def test_sign_in_filter_open_and_export_a_blocked_request(proxy: Harness, tmp_path: Path) -> None:
    with browser() as chromium:
        context = chromium.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        dialogs = no_dialogs(page)
        page.goto(proxy.proxy_url + "/console/decisions")
        assert page.url.endswith("/console/login")
        page.get_by_label("Admin key").fill("not the key")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text() == "That key is not the admin key."
        assert page.locator("table").count() == 0
        page.screenshot(path=str(tmp_path / "login.png"))

        page.get_by_label("Admin key").fill(KEY)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/")
        assert page.locator('svg[role="img"]').count() == 5
        page.get_by_role("link", name="Decisions", exact=True).click()
        page.get_by_label("Action").select_option("block")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**action=block**")
        rows = page.locator("tbody tr")
        assert rows.count() == 1
        page.screenshot(path=str(tmp_path / "decisions.png"), full_page=True)

        with page.expect_download() as download:
            page.get_by_role("link", name="Export CSV").first.click()
        exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert [r["request_id"] for r in exported] == [proxy.blocked_id]  # type: ignore[attr-defined]

        rows.first.get_by_role("link").click()
        page.wait_for_url(f"**/console/requests/{proxy.blocked_id}")  # type: ignore[attr-defined]
        assert "at or over the threshold" in page.content() and "line hash matches" in page.content()
        page.screenshot(path=str(tmp_path / "request.png"), full_page=True)

        page.goto(proxy.proxy_url + "/console/decisions?tenant=redactor")
        page.locator("tbody tr a").first.click()
        assert XSS in page.locator("pre").first.inner_text()  # kept content shown as text, not markup
        assert page.locator("img").count() == 0 and dialogs == []
        context.close()


def test_export_without_a_session_is_refused_in_the_browser(proxy: Harness) -> None:
    with browser() as chromium:
        page = chromium.new_page()
        response = page.goto(proxy.proxy_url + "/console/export.jsonl")
        assert response is not None and response.status == 401
        assert proxy.blocked_id not in page.content()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def day_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A day of varied decisions: several tenants, languages and rules, a blocked share."""
    tenants = ("acme", "acme", "acme", "globex", "globex", "initech", "umbrella")
    block_per_mille = {"en": 40, "de": 55, "fr": 35, "sw": 160, "th": 120, "ja": 70}
    langs = tuple(block_per_mille)
    records = []
    for n in range(1440):
        lang = langs[(n * 7) % 11 % 6]
        busy = 1 if 8 <= n // 60 <= 19 else 0  # office hours bring the abusive traffic
        blocked = (n * 37) % 1000 < block_per_mille[lang] * (1 + busy)
        action = "block" if blocked else ("redact" if n % 29 == 0 else ("log" if n % 31 == 0 else "allow"))
        records.append(make_record(
            0, ts=f"2026-11-22T{n // 60:02d}:{n % 60:02d}:00.000+00:00", request_id=f"req-{n:05d}",
            tenant=tenants[(n * 3) % 7], language=lang, action=action,
            score=round(0.62 + (n % 37) / 100, 2) if blocked else round((n % 40) / 100, 2),
            rules=(("email",) if action == "redact" else ())
            + (("openai_key",) if blocked and n % 4 == 0 else ()),
            latency_ms=3.0 + (n % 23) * 1.7 + (n % 97 == 0) * 40,
        ))  # fmt: skip
    path = tmp_path_factory.mktemp("day") / "audit.jsonl"
    write_log(path, records)
    return path


def test_overview_fits_a_phone_and_a_desktop(day_log: Path, tmp_path: Path) -> None:
    app = Starlette(routes=console_routes(FileReader([day_log]), KEY))
    with serve(app) as base, browser() as chromium:
        for width, name in ((1280, "overview-desktop.png"), (390, "overview-phone.png")):
            page = chromium.new_page(viewport={"width": width, "height": 900})
            page.goto(base + "/console/login")
            page.get_by_label("Admin key").fill(KEY)
            page.get_by_role("button", name="Sign in").click()
            page.goto(base + "/console/?since=2026-11-22")
            assert "1,440 decisions" in page.content()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{width}px window scrolls sideways by {overflow}px"
            page.screenshot(path=str(tmp_path / name), full_page=True)
            page.close()
    keep_screenshot(tmp_path / "overview-desktop.png", "console.png")

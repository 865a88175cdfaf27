"""Headless Chromium for the console and report tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download (``playwright install``) needs the internet; these tests use the
distribution's binary instead, and skip, saying why, only where it (or Playwright) is absent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def chromium_path() -> Path | None:
    """The Chromium binary to drive, or None."""
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


def skip_without_chromium() -> Any:
    """Skip on hosts without Chromium or Playwright (apt-get install chromium; pip install playwright)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return pytest.mark.skip(reason="Playwright is not installed (pip install 'crest-proxy[test]')")
    return pytest.mark.skipif(
        chromium_path() is None, reason="Chromium is not installed (Debian: apt-get install -y chromium)"
    )


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium browser (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(chromium_path()), headless=True)
        try:
            yield launched
        finally:
            launched.close()


def keep_screenshot(shot: Path, name: str) -> None:
    """Copy a test's screenshot into docs/img (the README shows it) when CREST_PROXY_SCREENSHOTS=1.

    Only on request: a test run must not change the checkout (every run rendered new bytes).
    """
    if os.environ.get("CREST_PROXY_SCREENSHOTS") != "1":
        return
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS_IMG / name)

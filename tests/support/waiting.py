"""Wait for a condition, never for a guessed time: the one polling helper of the test suite."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

_POLL_S = 0.01


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float = 5.0,
    what: str = "the condition",
    interval: float = _POLL_S,
) -> float:
    """Seconds until ``condition()`` is truthy; fails the test after ``timeout`` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} did not hold within {timeout:g} s")
        time.sleep(interval)
    return time.monotonic() - started


def wait_http_ready(
    url: str, process: subprocess.Popen[Any], output: Callable[[], str], *, timeout: float, what: str
) -> float:
    """Seconds until ``GET url`` answers 200; fails at once, with the process's output, if it exits first."""

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"{what} exited {process.returncode}:\n{output()[-3000:]}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # A starting server answers nothing useful faster than this; the process check runs every time.
    return wait_for(ready, timeout=timeout, what=f"{what} ready at {url}", interval=0.1)


async def wait_for_async(
    condition: Callable[[], object], *, timeout: float = 5.0, what: str = "the condition"
) -> float:
    """``wait_for`` for a test running on the event loop (the loop keeps running while it waits)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} did not hold within {timeout:g} s")
        await asyncio.sleep(_POLL_S)
    return time.monotonic() - started

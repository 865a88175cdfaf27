"""Wait for a condition, never for a guessed time: the one polling helper of the test suite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

_POLL_S = 0.01


def wait_for(condition: Callable[[], object], *, timeout: float = 5.0, what: str = "the condition") -> float:
    """Seconds until ``condition()`` is truthy; fails the test after ``timeout`` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} did not hold within {timeout:g} s")
        time.sleep(_POLL_S)
    return time.monotonic() - started


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

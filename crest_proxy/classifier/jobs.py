"""A unit of work for the worker thread, and the two ways its answer gets back (asyncio or plain future)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crest_proxy.types import Score

Outcome = list[Score] | BaseException


@dataclass(frozen=True)
class Job:
    """Texts from one caller, how to hand back their scores (thread-safe), and whether the caller gave up."""

    texts: tuple[str, ...]
    deliver: Callable[[Outcome], None]
    cancelled: Callable[[], bool]
    key: tuple[str, str] = ("", "")  # (tenant, request): the fair scheduler's two levels


def async_job(
    texts: Sequence[str], future: asyncio.Future[list[Score]], key: tuple[str, str] = ("", "")
) -> Job:
    """A job whose outcome settles ``future`` on its event loop (delivered from any thread)."""
    loop = future.get_loop()

    def deliver(outcome: Outcome) -> None:
        # A closed loop raises RuntimeError: its caller is gone and nobody waits for the outcome.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_async, future, outcome)

    # future.cancelled() is read from the worker thread: a plain attribute read, and a stale False only
    # means one more window is computed before the task is dropped.
    return Job(texts=tuple(texts), deliver=deliver, cancelled=future.cancelled, key=key)


def sync_job(texts: Sequence[str], future: concurrent.futures.Future[list[Score]]) -> Job:
    """A job whose outcome settles ``future``, which a blocking caller waits on."""

    def deliver(outcome: Outcome) -> None:
        if not future.done():
            _settle(future, outcome)

    return Job(texts=tuple(texts), deliver=deliver, cancelled=future.cancelled)


def _settle_async(future: asyncio.Future[list[Score]], outcome: Outcome) -> None:
    if not future.done():  # a cancelled caller's future is already done; drop its result
        _settle(future, outcome)


def _settle(
    future: asyncio.Future[list[Score]] | concurrent.futures.Future[list[Score]], outcome: Outcome
) -> None:
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)

"""The one interface the rest of crest-proxy knows about a classifier, and whose work a call is."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from crest_proxy.types import Score


@runtime_checkable
class Classifier(Protocol):
    """Scores texts for P(unsafe). Implementations must not block the event loop."""

    async def classify(self, texts: Sequence[str]) -> list[Score]:
        """Return one ``Score`` per text, in order."""
        ...


@dataclass(frozen=True)
class WorkKey:
    """Whose work a classify call is: the scheduler shares the model fairly by tenant, then by request."""

    tenant: str = ""
    request: str = ""


# Set by the guard around its classify calls (a context variable, so the Classifier protocol and every
# implementation that ignores fairness stay as they are); read by the micro-batcher's callers.
WORK_KEY: contextvars.ContextVar[WorkKey | None] = contextvars.ContextVar("crest_work_key", default=None)


def current_work_key() -> WorkKey:
    """The key set by the guard, else one of our own per asyncio task (each request is a task)."""
    key = WORK_KEY.get()
    if key is not None:
        return key
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a blocking caller (CLI)
        task = None
    return WorkKey("", f"task-{id(task)}" if task is not None else "")


@runtime_checkable
class TokenCounter(Protocol):
    """A classifier that can count tokens the way it windows texts (the screening budget's unit)."""

    def count_tokens(self, texts: Sequence[str]) -> int:
        """How many tokens ``texts`` hold, all together."""
        ...

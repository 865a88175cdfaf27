"""The one interface the rest of crest-proxy knows about a classifier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from crest_proxy.types import Score


@runtime_checkable
class Classifier(Protocol):
    """Scores texts for P(unsafe). Implementations must not block the event loop."""

    async def classify(self, texts: Sequence[str]) -> list[Score]:
        """Return one ``Score`` per text, in order."""
        ...

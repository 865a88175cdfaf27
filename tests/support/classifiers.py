"""``FakeClassifier``: the one stand-in for CREST where the model itself is not under test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from crest_proxy.classifier.synthetic import DEFAULT_TRIGGERS
from crest_proxy.types import Score


class FakeClassifier:
    """Scores a text ``score`` when it holds one of ``unsafe``, else ``safe_score``; or fails as told.

    ``error``: raised on every call (``ClassifierOverloadedError`` for overload, ``RuntimeError`` for a
    broken backend). ``hang``: never answers (the guard's timeout is under test). ``gate``: each call waits
    until the gate is set (``entered`` is set first), so a test can act while a request is mid-screening.
    """

    def __init__(
        self,
        unsafe: Sequence[str] = DEFAULT_TRIGGERS,
        *,
        score: float = 0.99,
        safe_score: float = 0.01,
        error: Exception | None = None,
        hang: bool = False,
        gate: threading.Event | None = None,
    ) -> None:
        self.unsafe, self.score, self.safe_score = tuple(unsafe), score, safe_score
        self.error, self.hang, self.gate = error, hang, gate
        self.entered = threading.Event()
        self.calls: list[list[str]] = []

    async def classify(self, texts: Sequence[str]) -> list[Score]:
        """Scores for ``texts`` (or the scripted failure)."""
        self.calls.append(list(texts))
        self.entered.set()
        if self.gate is not None:
            await asyncio.to_thread(self.gate.wait)
        if self.hang:
            await asyncio.Event().wait()  # forever: only a timeout or cancellation ends it
        if self.error is not None:
            raise self.error
        return [self._score(text) for text in texts]

    def _score(self, text: str) -> Score:
        flagged = any(word in text for word in self.unsafe)
        return Score(self.score, "unsafe") if flagged else Score(self.safe_score, "safe")


def safe_classifier() -> FakeClassifier:
    """A classifier that finds everything safe (the proxy, not the model, is under test)."""
    return FakeClassifier(unsafe=())


def broken_classifier(message: str = "onnxruntime: bad allocation") -> FakeClassifier:
    """A classifier whose backend always fails (what ``on_error`` is for)."""
    return FakeClassifier(error=RuntimeError(message))

"""Cheap, thread-safe counters of the classifier's work, read as an immutable snapshot (for metrics)."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("crest_proxy.classifier")


@dataclass(frozen=True)
class ClassifierStats:
    """What the classifier has done since it was loaded, and how many texts wait right now."""

    requests: int = 0
    texts: int = 0
    windows: int = 0
    model_calls: int = 0
    model_seconds: float = 0.0
    batch_sizes: Mapping[int, int] = field(default_factory=dict)
    errors: int = 0
    overloaded: int = 0
    queue_depth: int = 0

    @property
    def largest_batch(self) -> int:
        """The most windows one model call has taken."""
        return max(self.batch_sizes, default=0)

    @property
    def mean_batch_size(self) -> float:
        """Windows per model call on average."""
        return self.windows / self.model_calls if self.model_calls else 0.0


class StatsObserver(Protocol):
    """Told about each admission and model call as it happens (metrics histograms); must be quick."""

    def admitted(self, queue_depth: int) -> None:
        """Texts were queued; ``queue_depth`` texts now wait (these included)."""

    def model_call(self, rows: int, seconds: float) -> None:
        """One model call over ``rows`` windows took ``seconds``."""


class StatsRecorder:
    """Counters updated by the callers and the worker thread under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._batch_sizes: Counter[int] = Counter()
        self._model_seconds = 0.0
        self._queue_depth = 0
        self._observers: tuple[StatsObserver, ...] = ()

    def add_observer(self, observer: StatsObserver) -> Callable[[], None]:
        """Call ``observer`` on every admission and model call; returns the function that stops it."""
        with self._lock:
            self._observers = (*self._observers, observer)

        def remove() -> None:
            with self._lock:
                self._observers = tuple(o for o in self._observers if o is not observer)

        return remove

    def _notify(self, event: Callable[[StatsObserver], None]) -> None:
        # Outside the lock, and an observer's bug must never fail a classification.
        for observer in self._observers:
            try:
                event(observer)
            except Exception:
                log.exception("classifier stats observer failed")

    def admit(self, texts: int, limit: int | None) -> bool:
        """Count ``texts`` as queued unless that would pass ``limit`` (then count an overload)."""
        with self._lock:
            if limit is not None and self._queue_depth + texts > limit:
                self._counts["overloaded"] += 1
                return False
            self._queue_depth += texts
            self._counts["requests"] += 1
            self._counts["texts"] += texts
            depth = self._queue_depth
        self._notify(lambda o: o.admitted(depth))
        return True

    def dequeued(self, texts: int) -> None:
        """The worker took ``texts`` off the queue."""
        with self._lock:
            self._queue_depth -= texts

    def model_call(self, rows: int, seconds: float) -> None:
        """One model call over ``rows`` windows took ``seconds``."""
        with self._lock:
            self._counts["model_calls"] += 1
            self._counts["windows"] += rows
            self._batch_sizes[rows] += 1
            self._model_seconds += seconds
        self._notify(lambda o: o.model_call(rows, seconds))

    def error(self, requests: int = 1) -> None:
        """``requests`` callers got a ClassifierError."""
        with self._lock:
            self._counts["errors"] += requests

    def snapshot(self) -> ClassifierStats:
        """An immutable copy of every counter."""
        with self._lock:
            counts = self._counts
            return ClassifierStats(
                requests=counts["requests"],
                texts=counts["texts"],
                windows=counts["windows"],
                model_calls=counts["model_calls"],
                errors=counts["errors"],
                overloaded=counts["overloaded"],
                model_seconds=self._model_seconds,
                batch_sizes=dict(self._batch_sizes),
                queue_depth=self._queue_depth,
            )

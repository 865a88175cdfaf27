"""A circuit breaker: after repeated failures, fail fast for a while, not queue behind a dead server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BreakerState:
    """Whether calls may go through now, and the failure streak that decided it."""

    open: bool
    failures: int
    retry_in_s: float


class CircuitBreaker:
    """Closed until ``threshold`` consecutive failures; then open for ``cooldown_s``, then one trial call."""

    def __init__(
        self, threshold: int = 5, cooldown_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None

    def allow(self) -> bool:
        """Whether a call may be made now (an open breaker lets one trial through after its cooldown)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._clock() - self._opened_at >= self._cooldown_s:
                self._opened_at = self._clock()  # half-open: this caller tries; others keep failing fast
                return True
            return False

    def succeeded(self) -> None:
        """A call worked: close the breaker."""
        with self._lock:
            self._failures, self._opened_at = 0, None

    def failed(self) -> None:
        """A call failed: count it, and open the breaker at the threshold."""
        with self._lock:
            self._failures += 1
            if self._failures >= self._threshold:
                self._opened_at = self._clock()

    def state(self) -> BreakerState:
        """A snapshot for /readyz and error messages."""
        with self._lock:
            if self._opened_at is None:
                return BreakerState(open=False, failures=self._failures, retry_in_s=0.0)
            left = max(0.0, self._cooldown_s - (self._clock() - self._opened_at))
            return BreakerState(open=True, failures=self._failures, retry_in_s=left)

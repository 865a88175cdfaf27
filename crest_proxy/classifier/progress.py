"""Report loading phases (resolve, export, quantize, load, warm-up) with timings to a callback and the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("crest_proxy.classifier")

ProgressCallback = Callable[[str], None]


class PhaseReporter:
    """Announces each phase before it starts and says how long it took when it ends."""

    def __init__(self, progress: ProgressCallback | None = None) -> None:
        self._progress = progress

    def say(self, message: str) -> None:
        """Send one line to the callback and the ``crest_proxy.classifier`` logger."""
        log.info("%s", message)
        if self._progress is not None:
            self._progress(message)

    @contextmanager
    def phase(self, name: str, what: str) -> Iterator[None]:
        """Wrap one phase: "<name>: <what> …" before, "<name>: done in 1.23 s" after (or failed)."""
        self.say(f"{name}: {what} ...")
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.say(f"{name}: failed after {time.perf_counter() - start:.2f} s")
            raise
        self.say(f"{name}: done in {time.perf_counter() - start:.2f} s")

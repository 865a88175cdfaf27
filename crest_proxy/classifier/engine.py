"""``CrestClassifier``: a loaded model behind the micro-batcher, with windowing and stats."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crest_proxy.classifier.batcher import BatchLimits, MicroBatcher, Pipeline
from crest_proxy.classifier.jobs import async_job, sync_job
from crest_proxy.classifier.labels import LabelMap
from crest_proxy.classifier.protocol import WorkKey, current_work_key
from crest_proxy.classifier.routing import Selection
from crest_proxy.classifier.runtime import Runtime
from crest_proxy.classifier.settings import ClassifierSettings
from crest_proxy.classifier.stats import ClassifierStats, StatsObserver, StatsRecorder
from crest_proxy.classifier.windows import TokenEncoder, WindowShape
from crest_proxy.types import Score

if TYPE_CHECKING:
    from crest_proxy.classifier.remote import RemoteHealth


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded: which checkpoint and exact version, on which backend and precision, from where."""

    model: str
    revision: str
    backend: str
    precision: str
    unsafe_label: str
    id2label: Mapping[int, str]
    artifact_path: Path | None
    artifact_reused: bool
    load_seconds: float
    max_tokens: int
    device: str = "cpu"
    selection: Selection | None = None  # backend "auto": which backend runs which batch shape, and why
    rss_bytes: int | None = None  # the process's resident memory right after loading (auto holds two models)


class CrestClassifier:
    """Scores texts for P(unsafe); implements ``crest_proxy.classifier.protocol.Classifier``."""

    def __init__(
        self,
        info: ModelInfo,
        *,
        runtime: Runtime,
        encoder: TokenEncoder,
        labels: LabelMap,
        settings: ClassifierSettings,
    ) -> None:
        self.info = info
        self._runtime = runtime
        shape = WindowShape(tokens=info.max_tokens, overlap=min(settings.window_overlap, info.max_tokens - 3))
        pipeline = Pipeline(
            windows=lambda texts: encoder.windows(texts, shape),
            run=runtime.run,
            label_for=labels.label_for,
            pad_id=encoder.specials.pad_id,
        )
        limits = BatchLimits(
            settings.max_batch_size, settings.max_wait_ms, settings.max_queue, settings.max_batch_tokens
        )
        self._encoder = encoder
        self._stats = StatsRecorder()
        self._batcher = MicroBatcher(pipeline, limits, self._stats)

    async def classify(self, texts: Sequence[str], *, key: WorkKey | None = None) -> list[Score]:
        """One Score per text, in order; runs on the worker thread, batched fairly with concurrent callers.

        ``key`` says whose work this is (default: the guard's ``WORK_KEY``, else this asyncio task).
        """
        if not _checked(texts):
            return []
        key = key or current_work_key()
        future: asyncio.Future[list[Score]] = asyncio.get_running_loop().create_future()
        self._batcher.submit(async_job(texts, future, (key.tenant, key.request)), bounded=True)
        return await future

    def count_tokens(self, texts: Sequence[str]) -> int:
        """How many tokens ``texts`` hold for this model (the screening budget's unit; Rust, fast)."""
        return sum(len(ids) for ids in self._encoder.encode(list(texts))) if texts else 0

    def classify_sync(self, texts: Sequence[str]) -> list[Score]:
        """Blocking ``classify`` for CLIs and batch jobs (same windows and batching; no queue limit)."""
        if not _checked(texts):
            return []
        future: concurrent.futures.Future[list[Score]] = concurrent.futures.Future()
        self._batcher.submit(sync_job(texts, future), bounded=False)
        return future.result()

    @property
    def stats(self) -> ClassifierStats:
        """A snapshot of the work counters and the current queue depth."""
        return self._stats.snapshot()

    def observe(self, observer: StatsObserver) -> Callable[[], None]:
        """Tell ``observer`` about every admission and model call (metrics); returns its remover."""
        return self._stats.add_observer(observer)

    def health(self) -> RemoteHealth | None:
        """The remote server's last seen state (backend remote); None for a model loaded in-process."""
        check = getattr(self._runtime, "health", None)
        return check() if callable(check) else None

    def close(self) -> None:
        """Finish queued work and stop the worker thread (idempotent)."""
        self._batcher.close()
        release = getattr(self._runtime, "close", None)  # a remote runtime's connection pool
        if callable(release):
            release()

    async def aclose(self) -> None:
        """``close`` without blocking the event loop while the last batch finishes."""
        await asyncio.to_thread(self.close)


def _checked(texts: Sequence[str]) -> Sequence[str]:
    if isinstance(texts, str):
        raise TypeError("classify() takes a sequence of texts, not a single string")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, not str")
    return texts

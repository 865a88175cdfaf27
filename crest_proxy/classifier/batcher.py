"""The micro-batcher: one worker thread gathers jobs briefly, runs their windows in batches, routes scores."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from crest_proxy.classifier.jobs import Job
from crest_proxy.classifier.packing import PaddedBatch, max_per_text, pad, plan_chunks
from crest_proxy.classifier.stats import StatsRecorder
from crest_proxy.errors import ClassifierError, ClassifierOverloadedError
from crest_proxy.types import Score

log = logging.getLogger("crest_proxy.classifier")

_STOP = object()


@dataclass(frozen=True)
class Pipeline:
    """What the worker does with texts: window them, score padded batches, name the decision."""

    windows: Callable[[Sequence[str]], list[list[list[int]]]]
    run: Callable[[PaddedBatch], np.ndarray]
    label_for: Callable[[float], str]
    pad_id: int


@dataclass(frozen=True)
class BatchLimits:
    """How big a model call may get, how long to wait for company, and how many texts may queue."""

    max_batch_size: int
    max_wait_ms: float
    max_queue: int


@dataclass(frozen=True)
class _Collected:
    group: list[_Prepared]
    stop: bool


@dataclass(frozen=True)
class _Prepared:
    job: Job
    windows: list[list[list[int]]]

    @property
    def window_count(self) -> int:
        return sum(len(w) for w in self.windows)


class MicroBatcher:
    """Owns the queue and the single worker thread that runs the model, one call at a time."""

    def __init__(self, pipeline: Pipeline, limits: BatchLimits, stats: StatsRecorder) -> None:
        self._pipeline = pipeline
        self._limits = limits
        self._stats = stats
        self._queue: queue.Queue[object] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: Job, *, bounded: bool) -> None:
        """Queue ``job``; bounded submissions past ``max_queue`` waiting texts are refused."""
        with self._lock:
            if self._closed:
                raise ClassifierError("the classifier is closed")
            limit = self._limits.max_queue if bounded else None
            if not self._stats.admit(len(job.texts), limit):
                raise ClassifierOverloadedError(
                    f"classifier queue is full ({self._limits.max_queue} texts waiting at most); retry later"
                )
            self._start_locked()
            self._queue.put(job)

    def close(self, timeout: float | None = None) -> None:
        """Finish queued jobs, then stop the worker; safe to call more than once."""
        with self._lock:
            thread, self._closed = self._thread, True
            if thread is not None and thread.is_alive():
                self._queue.put(_STOP)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _start_locked(self) -> None:
        # Started on first use, not in a constructor: an unused classifier holds no thread.
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="crest-classifier", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                return
            collected = self._collect(first)
            stop = collected.stop
            try:
                self._process(collected.group)
            except Exception as exc:  # a bug here must not kill the worker: fail this group, go on
                log.exception("classifier worker failed on a batch")
                self._fail(collected.group, exc)

    def _collect(self, first: object) -> _Collected:
        """Gather jobs until ``max_batch_size`` windows or ``max_wait_ms``; also says whether STOP came."""
        group: list[_Prepared] = []
        item, deadline = first, time.monotonic() + self._limits.max_wait_ms / 1000.0
        while item is not _STOP:
            prepared = self._prepare(item)
            group.extend([prepared] if prepared is not None else [])
            if sum(p.window_count for p in group) >= self._limits.max_batch_size:
                break
            remaining = deadline - time.monotonic()
            try:
                # Past the deadline, still take what is already queued (no waiting).
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
        return _Collected(group, stop=item is _STOP)

    def _prepare(self, item: object) -> _Prepared | None:
        item = cast(Job, item)
        self._stats.dequeued(len(item.texts))
        if item.cancelled():
            return None
        try:
            return _Prepared(job=item, windows=self._pipeline.windows(item.texts))
        except Exception as exc:
            self._fail([_Prepared(job=item, windows=[])], exc)
            return None

    def _process(self, group: list[_Prepared]) -> None:
        flat = [w for p in group for text in p.windows for w in text]
        scores = np.zeros(len(flat))
        errors: dict[int, Exception] = {}  # window index -> why its model call failed
        for chunk in plan_chunks([len(w) for w in flat], self._limits.max_batch_size):
            result = self._run_chunk([flat[i] for i in chunk])
            if isinstance(result, Exception):
                errors.update(dict.fromkeys(chunk, result))
            else:
                scores[chunk] = result
        start = 0
        for prepared in group:
            end = start + prepared.window_count
            failure = next((errors[i] for i in range(start, end) if i in errors), None)
            if failure is None:
                self._deliver(prepared, scores[start:end])
            else:
                self._fail([prepared], failure)
            start = end

    def _run_chunk(self, windows: list[list[int]]) -> np.ndarray | Exception:
        """Scores for one model call, or the exception that call raised (only its callers fail)."""
        started = time.perf_counter()
        try:
            out = np.asarray(self._pipeline.run(pad(windows, self._pipeline.pad_id)), dtype=np.float64)
            if out.shape != (len(windows),) or not np.isfinite(out).all():
                raise ValueError(f"model returned invalid scores (shape {out.shape} for {len(windows)} rows)")
        except Exception as exc:
            log.exception("classifier model call failed (%d windows)", len(windows))
            return exc
        self._stats.model_call(len(windows), time.perf_counter() - started)
        return out

    def _deliver(self, prepared: _Prepared, scores: np.ndarray) -> None:
        per_text = max_per_text(scores.tolist(), [len(w) for w in prepared.windows])
        label = self._pipeline.label_for
        counts = [len(w) for w in prepared.windows]
        prepared.job.deliver(
            [Score(score=s, label=label(s), windows=n) for s, n in zip(per_text, counts, strict=True)]
        )

    def _fail(self, group: list[_Prepared], exc: BaseException) -> None:
        self._stats.error(len(group))
        for prepared in group:
            error = ClassifierError(f"classifier failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            prepared.job.deliver(error)

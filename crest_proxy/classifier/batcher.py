"""The micro-batcher: one worker thread runs windows of all callers in batches, fairly, and routes scores."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from crest_proxy.classifier.fairqueue import FairQueue, Slot, Task
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
    # Tokens per model call (one window always fits): bounds how long another tenant's short request
    # can wait behind the call in flight (benchmarks/adversarial.py: 512 -> median 1.06x idle latency).
    max_batch_tokens: int = 512


class MicroBatcher:
    """Owns the queue and the single worker thread that runs the model, one call at a time.

    Callers' jobs land in an inbox; the worker windows them into a ``FairQueue`` and takes each model
    call's windows round-robin over tenants and requests, so long prompts interleave with everyone else's.
    A job is answered as soon as its last window is scored; a cancelled job is dropped, never computed.
    """

    def __init__(self, pipeline: Pipeline, limits: BatchLimits, stats: StatsRecorder) -> None:
        self._pipeline = pipeline
        self._limits = limits
        self._stats = stats
        self._inbox: queue.Queue[object] = queue.Queue()
        self._pending = FairQueue()  # the worker's alone
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: Job, *, bounded: bool) -> None:
        """Queue ``job``; bounded submissions past ``max_queue`` unanswered texts are refused."""
        with self._lock:
            if self._closed:
                raise ClassifierError("the classifier is closed")
            limit = self._limits.max_queue if bounded else None
            if not self._stats.admit(len(job.texts), limit):
                raise ClassifierOverloadedError(
                    f"classifier queue is full ({self._limits.max_queue} texts waiting at most); retry later"
                )
            self._start_locked()
            self._inbox.put(job)

    def close(self, timeout: float | None = None) -> None:
        """Finish queued jobs, then stop the worker; safe to call more than once."""
        with self._lock:
            thread, self._closed = self._thread, True
            if thread is not None and thread.is_alive():
                self._inbox.put(_STOP)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _start_locked(self) -> None:
        # Started on first use, not in a constructor: an unused classifier holds no thread.
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="crest-classifier", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        stopping = False
        while not (stopping and not self._pending):
            stopping = self._gather(block=not self._pending and not stopping) or stopping
            for task in self._pending.drop_cancelled():
                self._retire(task)
            slots = self._pending.take(self._limits.max_batch_size, self._limits.max_batch_tokens)
            if slots:
                try:
                    self._process(slots)
                except Exception as exc:  # a bug here must not kill the worker: fail these jobs, go on
                    log.exception("classifier worker failed on a batch")
                    self._fail({s.task for s in slots}, exc)

    def _gather(self, *, block: bool) -> bool:
        """Move inbox jobs into the fair queue; when idle, wait up to ``max_wait_ms`` for company.

        Returns whether STOP arrived.
        """
        item = self._inbox.get() if block else self._poll(0.0)
        deadline = time.monotonic() + self._limits.max_wait_ms / 1000.0
        while item is not None:
            if item is _STOP:
                return True
            self._absorb(item)  # type: ignore[arg-type]
            # Past the deadline (or with work already waiting), take only what is already queued.
            item = self._poll(deadline - time.monotonic() if block else 0.0)
        return False

    def _poll(self, timeout: float) -> object | None:
        try:
            return self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return None

    def _absorb(self, job: Job) -> None:
        try:
            task = Task(job, self._pipeline.windows(job.texts) if not job.cancelled() else [])
        except Exception as exc:
            self._fail({Task(job, [])}, exc)
            return
        if job.cancelled():
            self._retire(task)
        elif not task.flat:  # no texts, no windows: nothing to wait for
            self._retire(task)
            self._deliver(task)
        else:
            self._pending.add(task)

    def _process(self, slots: list[Slot]) -> None:
        """Run ``slots`` in padding-aware chunks; answer each job as soon as its last window is scored."""
        for chunk in plan_chunks([len(s.tokens) for s in slots], self._limits.max_batch_size):
            live = [slots[i] for i in chunk if self._wanted(slots[i].task)]
            if not live:
                continue
            result = self._run_chunk([s.tokens for s in live])
            if isinstance(result, Exception):
                self._fail({s.task for s in live}, result)
                continue
            for slot, score in zip(live, result.tolist(), strict=True):
                slot.task.scores[slot.index] = score
                slot.task.scored += 1
                if slot.task.finished and self._retire(slot.task):
                    self._deliver(slot.task)

    def _wanted(self, task: Task) -> bool:
        """Whether ``task``'s windows are still worth computing (its caller still waits)."""
        if task.job.cancelled():
            self._retire(task)
        return not task.closed

    def _retire(self, task: Task) -> bool:
        """Close ``task`` once (out of the queue, off the depth count); False if it already was."""
        if task.closed:
            return False
        task.closed = True
        self._pending.remove(task)
        self._stats.dequeued(len(task.job.texts))
        return True

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

    def _deliver(self, task: Task) -> None:
        counts = [len(w) for w in task.windows]
        per_text = max_per_text(task.scores.tolist(), counts)
        label = self._pipeline.label_for
        task.job.deliver(
            [Score(score=s, label=label(s), windows=n) for s, n in zip(per_text, counts, strict=True)]
        )

    def _fail(self, tasks: set[Task], exc: BaseException) -> None:
        """Answer ``tasks`` with a ClassifierError and take them out of the queue."""
        failed = [t for t in tasks if self._retire(t)]
        self._stats.error(len(failed))
        for task in failed:
            error = ClassifierError(f"classifier failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            task.job.deliver(error)

"""Fair scheduling (issue 14): windows interleave across tenants and requests; abandoned work is dropped."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from crest_proxy.classifier import CrestClassifier
from crest_proxy.classifier.fairqueue import FairQueue, Task
from crest_proxy.classifier.jobs import Job
from crest_proxy.classifier.packing import PaddedBatch
from crest_proxy.classifier.protocol import WorkKey
from crest_proxy.policy.model import Policy
from crest_proxy.screening.guard import Guard
from crest_proxy.types import Action, Direction
from tests.support.waiting import wait_for_async
from tests.test_classifier_batching import fake_engine, trigger_ids

LONG = "the " * 3000  # 7 windows of 512 tokens
SHORT = "kaboom is one sentence"


def task(tenant: str, request: str, windows: int, width: int = 4) -> Task:
    job = Job(texts=("x",), deliver=lambda _: None, cancelled=lambda: False, key=(tenant, request))
    return Task(job, [[[0] * width for _ in range(windows)]])


def test_windows_are_handed_out_round_robin_by_tenant_then_request_new_flows_first() -> None:
    queue = FairQueue()
    a1, b, a2 = task("a", "r1", 5), task("b", "r", 1), task("a", "r2", 2)
    for t in (a1, b, a2):
        queue.add(t)
    taken = [s.task for s in queue.take(max_rows=8, max_tokens=10_000)]
    assert taken == [b, a2, a1, a2, a1, a1, a1, a1]
    assert not queue


def test_a_call_holds_at_most_max_tokens_but_always_one_window() -> None:
    queue = FairQueue()
    queue.add(task("a", "r", 3, width=512))
    assert len(queue.take(max_rows=8, max_tokens=1000)) == 1  # 2 x 512 would pass 1,000
    assert len(queue.take(max_rows=8, max_tokens=100)) == 1  # one window always fits
    assert len(queue.take(max_rows=8, max_tokens=100)) == 1
    assert not queue


class RecordingRuntime:
    """Scores 0.9 for rows with a trigger id; remembers each call's rows; each call waits for ``gate``."""

    def __init__(self, trigger: list[int]) -> None:
        self.trigger = trigger
        self.calls: list[list[int]] = []  # the row lengths of every call
        self.gate = threading.Semaphore(0)
        self.entered = threading.Event()

    def run(self, batch: PaddedBatch) -> np.ndarray:
        self.entered.set()
        assert self.gate.acquire(timeout=10), "test forgot to release a call"
        self.calls.append(batch.attention_mask.sum(axis=1).tolist())
        return np.where(np.isin(batch.input_ids, self.trigger).any(axis=1), 0.9, 0.1)


def engine(model_dir: Path, runtime: RecordingRuntime) -> CrestClassifier:
    return fake_engine(model_dir, runtime, max_wait_ms=0, max_batch_tokens=512)  # type: ignore[arg-type]


async def test_a_short_request_runs_right_after_the_call_in_flight(trigger_model_dir: Path) -> None:
    runtime = RecordingRuntime(trigger_ids(trigger_model_dir))
    classifier = engine(trigger_model_dir, runtime)
    try:
        long = asyncio.ensure_future(classifier.classify([LONG], key=WorkKey("a", "big")))
        assert await asyncio.to_thread(runtime.entered.wait, 10)  # the long prompt's first window runs
        short = asyncio.ensure_future(classifier.classify([SHORT], key=WorkKey("b", "small")))
        # Both texts admitted (the long one's call is in flight; no call can finish: the gate is shut).
        await wait_for_async(lambda: classifier.stats.queue_depth >= 2, what="the short request queued")
        runtime.gate.release(2)  # the call in flight, then exactly one more
        scores = await asyncio.wait_for(short, 10)
        assert [s.label for s in scores] == ["unsafe"]
        assert len(runtime.calls) == 2 and max(runtime.calls[1]) < 20  # the second call was the short one
        runtime.gate.release(100)
        assert (await long)[0].windows == 7
    finally:
        runtime.gate.release(100)
        await classifier.aclose()


async def test_work_of_a_caller_who_gave_up_is_never_computed(trigger_model_dir: Path) -> None:
    runtime = RecordingRuntime(trigger_ids(trigger_model_dir))
    classifier = engine(trigger_model_dir, runtime)
    try:
        doomed = asyncio.ensure_future(classifier.classify([LONG], key=WorkKey("a", "big")))
        assert await asyncio.to_thread(runtime.entered.wait, 10)
        doomed.cancel()
        runtime.gate.release(100)
        after = await classifier.classify(["hi"], key=WorkKey("b", "next"))
        assert after[0].label == "safe"
        assert (
            len(runtime.calls) == 2
        )  # the long prompt's first window (in flight) and "hi": 6 windows dropped
        assert classifier.stats.queue_depth == 0
    finally:
        runtime.gate.release(100)
        await classifier.aclose()


async def test_a_guard_timeout_reaches_the_worker(trigger_model_dir: Path) -> None:
    runtime = RecordingRuntime(trigger_ids(trigger_model_dir))
    classifier = engine(trigger_model_dir, runtime)
    policy = Policy.model_validate(
        {"tenant": "t", "keys": ["sha256:" + "ab" * 32], "upstream": {"base_url": "https://x.example/v1"}}
    )
    guard = Guard(classifier, timeout_s=0.2)
    try:
        screening = await guard.screen(policy, Direction.INBOUND, [LONG])
        assert screening.failed_closed and screening.action is Action.BLOCK
        runtime.gate.release(100)
        await classifier.classify(["hi"])  # the worker is free again, and skipped the abandoned windows
        assert len(runtime.calls) == 2
        assert classifier.stats.queue_depth == 0
    finally:
        runtime.gate.release(100)
        await classifier.aclose()


@pytest.mark.parametrize("tenants", [2, 5])
async def test_every_caller_gets_its_own_scores_under_interleaving(
    trigger_model_dir: Path, tenants: int
) -> None:
    runtime = RecordingRuntime(trigger_ids(trigger_model_dir))
    runtime.gate.release(10_000)
    classifier = engine(trigger_model_dir, runtime)
    try:
        texts = [["the " * (600 * i) + ("kaboom" if i % 2 else "calm")] for i in range(1, 9)]
        results = await asyncio.gather(
            *(classifier.classify(t, key=WorkKey(f"t{i % tenants}", f"r{i}")) for i, t in enumerate(texts))
        )
        for i, scores in enumerate(results):
            assert scores[0].label == ("unsafe" if (i + 1) % 2 else "safe")
        assert classifier.stats.queue_depth == 0
    finally:
        await classifier.aclose()

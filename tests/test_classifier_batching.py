"""The micro-batcher: routing under concurrency, batching stats, overload, errors, cancellation, close."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crest_proxy.classifier import ClassifierSettings, CrestClassifier, ModelInfo, load_classifier
from crest_proxy.classifier.labels import find_labels
from crest_proxy.classifier.packing import PaddedBatch
from crest_proxy.classifier.protocol import Classifier
from crest_proxy.classifier.windows import SpecialTokens, load_encoder
from crest_proxy.errors import ClassifierError, ClassifierOverloadedError
from tests.support.waiting import wait_for_async


class FakeRuntime:
    """P(unsafe)=0.9 for rows holding a trigger id, else 0.1; it can be held at the gate or poisoned."""

    def __init__(self, trigger_ids: list[int], poison_id: int | None = None) -> None:
        self.trigger_ids = trigger_ids
        self.poison_id = poison_id
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.rows: list[int] = []

    def run(self, batch: PaddedBatch) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(10), "test forgot to open the gate"
        if self.poison_id is not None and (batch.input_ids == self.poison_id).any():
            raise RuntimeError("poisoned batch")
        self.rows.append(batch.rows)
        flagged = np.isin(batch.input_ids, self.trigger_ids).any(axis=1)
        return np.where(flagged, 0.9, 0.1)


def trigger_ids(model_dir: Path) -> list[int]:
    return list(json.loads((model_dir / "synthetic.json").read_text())["trigger_ids"])


def fake_engine(model_dir: Path, runtime: FakeRuntime, **overrides: object) -> CrestClassifier:
    """A CrestClassifier over the trigger model's real tokenizer and a fake model."""
    encoder = load_encoder(model_dir / "tokenizer.json", SpecialTokens(bos_id=0, eos_id=2, pad_id=1))
    labels = find_labels({0: "safe", 1: "unsafe"}, model="fake")
    info = ModelInfo(
        model="fake",
        revision="test",
        backend="fake",
        precision="fp32",
        unsafe_label="unsafe",
        id2label=dict(labels.id2label),
        artifact_path=None,
        artifact_reused=False,
        load_seconds=0.0,
        max_tokens=512,
    )
    settings = ClassifierSettings(model="fake", **overrides)  # type: ignore[arg-type]
    return CrestClassifier(info, runtime=runtime, encoder=encoder, labels=labels, settings=settings)


@pytest.fixture(scope="module")
def batching_classifier(
    trigger_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrestClassifier]:
    """The real trigger model (onnx int8) with a long collection window so that callers share batches."""
    cache = tmp_path_factory.getbasetemp() / "crest-artifacts"
    settings = ClassifierSettings(
        model=str(trigger_model_dir),
        cache_dir=cache,
        max_wait_ms=50,
        max_batch_size=16,
        max_batch_tokens=16 * 512,
    )
    classifier = load_classifier(settings)
    yield classifier
    classifier.close()


async def test_concurrent_callers_each_get_their_own_answers(batching_classifier: CrestClassifier) -> None:
    rng = random.Random(7)
    pool = [
        "hello there",
        "kaboom",
        "Le renard brun saute",
        "dis zarquon stp",
        "今日はいい天気",
        "",
        "the " * 700,
    ]
    pool += ["the " * 600 + "kaboom"]  # unsafe only in its second window
    requests = [[rng.choice(pool) for _ in range(rng.randint(1, 4))] for _ in range(50)]
    assert isinstance(batching_classifier, Classifier)
    before = batching_classifier.stats

    results = await asyncio.gather(*(batching_classifier.classify(texts) for texts in requests))

    for texts, scores in zip(requests, results, strict=True):
        assert [s.label for s in scores] == ["unsafe" if _has_trigger(t) else "safe" for t in texts]
        assert [s.windows for s in scores] == [1 if len(t) < 2000 else 2 for t in texts]
    after = batching_classifier.stats
    windows = sum(s.windows for scores in results for s in scores)
    assert after.windows - before.windows == windows
    assert after.model_calls - before.model_calls < len(requests)  # callers shared model calls
    assert after.largest_batch > 1
    assert after.queue_depth == 0
    assert after.requests - before.requests == len(requests)


def _has_trigger(text: str) -> bool:
    return "kaboom" in text or "zarquon" in text


async def test_a_full_queue_refuses_more(trigger_model_dir: Path) -> None:
    runtime = FakeRuntime(trigger_ids(trigger_model_dir))
    runtime.gate.clear()
    classifier = fake_engine(trigger_model_dir, runtime, max_queue=5, max_wait_ms=0)
    try:
        with pytest.raises(ClassifierOverloadedError):
            await classifier.classify(["x"] * 6)  # more than the queue can ever hold
        first = asyncio.ensure_future(classifier.classify(["a"]))
        assert await asyncio.to_thread(runtime.entered.wait, 10)  # the worker is busy with "a"
        waiting = asyncio.ensure_future(classifier.classify(["b", "c", "d", "kaboom"]))
        await wait_for_async(lambda: classifier.stats.queue_depth == 5, what="the texts to be queued")
        with pytest.raises(ClassifierOverloadedError):
            await classifier.classify(["e"])
        assert classifier.stats.queue_depth == 5  # "a" (in the model call) is unanswered too
        assert classifier.stats.overloaded == 2
        runtime.gate.set()
        assert [s.label for s in await first] == ["safe"]
        assert [s.label for s in await waiting] == ["safe", "safe", "safe", "unsafe"]
    finally:
        runtime.gate.set()
        await classifier.aclose()


async def test_model_errors_reach_only_affected_callers(trigger_model_dir: Path) -> None:
    ids = trigger_ids(trigger_model_dir)
    runtime = FakeRuntime(ids[:1], poison_id=ids[1])  # "zarquon" poisons the batch it is in
    classifier = fake_engine(trigger_model_dir, runtime, max_batch_size=1, max_wait_ms=20)
    try:
        results = await asyncio.gather(
            classifier.classify(["zarquon"]), classifier.classify(["kaboom", "hi"]), return_exceptions=True
        )
        assert isinstance(results[0], ClassifierError) and "poisoned batch" in str(results[0])
        assert isinstance(results[1], list) and [s.label for s in results[1]] == ["unsafe", "safe"]
        assert [s.label for s in await classifier.classify(["hi"])] == ["safe"]  # the worker survived
        assert classifier.stats.errors == 1
    finally:
        await classifier.aclose()


async def test_cancelled_caller_does_not_break_the_worker(trigger_model_dir: Path) -> None:
    runtime = FakeRuntime(trigger_ids(trigger_model_dir))
    runtime.gate.clear()
    classifier = fake_engine(trigger_model_dir, runtime, max_wait_ms=0)
    try:
        first = asyncio.ensure_future(classifier.classify(["kaboom"]))
        assert await asyncio.to_thread(runtime.entered.wait, 10)
        doomed = asyncio.ensure_future(classifier.classify(["hi"]))
        await asyncio.sleep(0)
        doomed.cancel()
        runtime.gate.set()
        assert [s.label for s in await first] == ["unsafe"]
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert [s.label for s in await classifier.classify(["hi", "kaboom"])] == ["safe", "unsafe"]
        assert classifier.stats.queue_depth == 0
    finally:
        await classifier.aclose()


def test_sync_calls_batch_internally_and_close_is_idempotent(trigger_model_dir: Path) -> None:
    runtime = FakeRuntime(trigger_ids(trigger_model_dir))
    classifier = fake_engine(trigger_model_dir, runtime, max_batch_size=8)
    texts = ["kaboom" if i % 3 == 0 else f"text {i}" for i in range(20)]
    scores = classifier.classify_sync(texts)
    assert [s.label for s in scores] == ["unsafe" if i % 3 == 0 else "safe" for i in range(20)]
    assert runtime.rows == [8, 8, 4]
    assert classifier.classify_sync([]) == []
    classifier.close()
    classifier.close()
    with pytest.raises(ClassifierError, match="closed"):
        classifier.classify_sync(["hi"])


async def test_classify_rejects_a_bare_string(trigger_model_dir: Path) -> None:
    classifier = fake_engine(trigger_model_dir, FakeRuntime([]))
    with pytest.raises(TypeError):
        await classifier.classify("not a list")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await classifier.classify(["ok", 3])  # type: ignore[list-item]
    await classifier.aclose()

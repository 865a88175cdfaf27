"""A text's score does not depend on its batch-mates or its batch's padding, on any backend (issue 14).

Dynamic int8 used to pick one activation scale per batch: a batch-mate with an outlier activation made
an unsafe text score 0.007 instead of 0.99. The checkpoint here has such an outlier token on purpose.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crest_proxy.classifier import ClassifierSettings, CrestClassifier, load_classifier
from crest_proxy.classifier.packing import PaddedBatch, pad
from crest_proxy.classifier.routing import RoutedRuntime, RoutingTable, ShapeTiming
from crest_proxy.classifier.runtime import unsafe_probability
from crest_proxy.classifier.synthetic import build_random_model

BACKENDS = [("onnx", True), ("onnx", False), ("torch", False), ("torch", True), ("bf16", False)]
WORDS = [
    *("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"),
    *("hello", "world", "how", "are", "you", "today", "please", "translate"),
]


@pytest.fixture(scope="module")
def outlier_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random CREST-shaped ("small") checkpoint whose token "zz" has a huge, one-channel embedding."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = build_random_model(tmp_path_factory.mktemp("outlier"), shape="small", seed=3)
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    token = AutoTokenizer.from_pretrained(str(out)).convert_tokens_to_ids("▁z")
    with torch.no_grad():
        row = model.roberta.embeddings.word_embeddings.weight[token]
        row.zero_()
        row[5] = 1000.0  # after LayerNorm: one channel near sqrt(hidden), the rest near 0
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module", params=BACKENDS, ids=[f"{b}-{'int8' if q else 'float'}" for b, q in BACKENDS])
def backend(
    request: pytest.FixtureRequest, outlier_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrestClassifier]:
    name, quantize = request.param
    settings = ClassifierSettings(
        model=str(outlier_model_dir),
        backend=name,
        quantize=quantize,
        device="cpu",
        cache_dir=tmp_path_factory.getbasetemp() / "independence-artifacts",
        max_batch_tokens=1 << 20,  # everything in one model call: the hardest case
    )
    classifier = load_classifier(settings)
    yield classifier
    classifier.close()


def random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 120))) for _ in range(count)]


MATES = [
    "z " * 500,  # the outlier token, over and over (the crafted batch-mate)
    " ".join(WORDS) * 30,  # a long text: its window pads everyone else to 512
    "!" * 300 + " ".join(["zz"] * 50),
]


def test_scores_alone_equal_scores_in_any_batch(backend: CrestClassifier) -> None:
    texts = random_texts(11, 12)
    alone = np.array([backend.classify_sync([t])[0].score for t in texts])
    for mates in ([], MATES, MATES[:1], MATES[1:2]):
        batched = backend.classify_sync(mates + texts)[len(mates) :]
        delta = np.abs(np.array([s.score for s in batched]) - alone)
        assert delta.max() <= 1e-4, f"max |Δ| {delta.max():.2e} with {len(mates)} crafted batch-mates"
        assert [s.score >= 0.5 for s in batched] == list(alone >= 0.5)


def test_the_crafted_mate_does_move_per_batch_int8_scales(backend: CrestClassifier, tmp_path: Path) -> None:
    """The test above has teeth: ORT's stock dynamic int8 (one scale per batch) fails it on these texts."""
    if backend.info.backend != "onnx" or backend.info.precision != "fp32":
        pytest.skip("checked once, from the fp32 ONNX export")
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    assert backend.info.artifact_path is not None
    stock = tmp_path / "stock-int8.onnx"
    quantize_dynamic(backend.info.artifact_path / "model.onnx", stock, weight_type=QuantType.QInt8)
    session = ort.InferenceSession(str(stock), providers=["CPUExecutionProvider"])
    texts = [[0, *range(10, 10 + n), 2] for n in (12, 40, 90)]
    mate = [0] + [backend_token(backend, "z")] * 500 + [2]

    def logits(rows: list[list[int]]) -> np.ndarray:
        batch = pad(rows, 1)
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        return np.asarray(session.run(None, feed)[0])

    alone = unsafe_probability(np.array([logits([t])[0] for t in texts]), 1)
    batched = unsafe_probability(logits([mate, *texts])[1:], 1)
    assert np.abs(alone - batched).max() > 1e-4  # the bound the per-token recipe keeps


def backend_token(backend: CrestClassifier, word: str) -> int:
    return int(backend._encoder.encode([word])[0][0])  # noqa: SLF001 (a test reads the tokenizer)


class Constant:
    """A fake backend that scores every row ``value`` and remembers the shapes it ran."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.shapes: list[tuple[int, int]] = []

    def run(self, batch: PaddedBatch) -> np.ndarray:
        self.shapes.append((batch.rows, int(batch.input_ids.shape[1])))
        return np.full(batch.rows, self.value)


def test_auto_routes_each_row_by_its_own_length_not_by_its_batch() -> None:
    table = RoutingTable(
        (
            ShapeTiming(1, 16, {"onnx": 1.0, "bf16": 2.0}),
            ShapeTiming(16, 16, {"onnx": 2.0, "bf16": 1.0}),  # by batch shape, 16 short rows would go to bf16
            ShapeTiming(1, 512, {"onnx": 2.0, "bf16": 1.0}),
        )
    )
    onnx, bf16 = Constant(0.25), Constant(0.75)
    routed = RoutedRuntime({"onnx": onnx, "bf16": bf16}, table)
    short, long = [0] + [5] * 14 + [2], [0] + [5] * 500 + [2]
    alone = routed.run(pad([short], 1))
    batched = routed.run(pad([long, short] + [short] * 15, 1))
    assert alone[0] == 0.25 and batched.tolist() == [0.75] + [0.25] * 16  # each row as if alone
    assert onnx.shapes[-1] == (16, 16)  # the short rows ran together, unpadded by the long one

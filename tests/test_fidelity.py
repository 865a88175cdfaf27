"""Quantized backends stay faithful to torch fp32 on trained weights (all-MiniLM-L6-v2 + a fitted head).

Random or hand-set weights cannot show quantization error; trained weights with real outliers can.
benchmarks/fidelity.py prints the full table these bounds come from.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crest_proxy.classifier import ClassifierSettings, load_classifier
from crest_proxy.classifier.fidelity import build_fitted_classifier, compare, fidelity_examples

pytestmark = pytest.mark.slow

# Bounds from benchmarks/fidelity.py on this set (72 held-out texts, avx512_vnni preset). Per-channel int8
# moved P(unsafe) by at most 0.12-0.16 (the text's batch-mates change the dynamic activation scale) and
# by 0.009 on average; per-tensor int8 by 0.18 max / 0.018 mean; torch's per-tensor int8 0.15 / 0.021.
# The largest shifts are borderline texts near p = 0.5, where the sigmoid is steepest. The max bound
# leaves ~1.6x headroom for other CPUs' kernels; the mean bound is what tells per-channel from per-tensor.
INT8_MAX_SHIFT = 0.25
INT8_MEAN_SHIFT = 0.015
# bf16 (benchmarks/fidelity.py, same set): 0.009 max / 0.0007 mean; bounds leave ~3x headroom.
BF16_MAX_SHIFT = 0.03
BF16_MEAN_SHIFT = 0.003
BACKENDS = {
    "torch-int8": ("torch", True),
    "onnx-fp32": ("onnx", False),
    "onnx-int8": ("onnx", True),
    "bf16": ("bf16", True),
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fitted MiniLM safe/unsafe classifier, built once for this module."""
    return build_fitted_classifier(tmp_path_factory.mktemp("minilm-fitted"))


@pytest.fixture(scope="module")
def held_out() -> list[str]:
    """The held-out texts (never seen by the head's fit)."""
    return [e.text for e in fidelity_examples()[1]]


@pytest.fixture(scope="module")
def probabilities(fitted: Path, held_out: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """P(unsafe) per held-out text for torch fp32 and every other backend, through load_classifier."""
    cache = tmp_path_factory.mktemp("artifacts")
    runs = {"torch-fp32": ("torch", False), **BACKENDS}
    return {
        name: _scores(fitted, cache, backend, quantize, held_out)
        for name, (backend, quantize) in runs.items()
    }


def _scores(model: Path, cache: Path, backend: str, quantize: bool, texts: list[str]) -> list[float]:
    settings = ClassifierSettings(
        model=str(model), backend=backend, quantize=quantize, threads=2, cache_dir=cache, offline=True
    )
    clf = load_classifier(settings)
    try:
        return [s.score for s in clf.classify_sync(texts)]
    finally:
        clf.close()


def test_compare_on_known_values() -> None:
    result = compare([0.1, 0.9, 0.6], [0.1, 0.8, 0.4])
    assert result.texts == 3
    assert result.max_shift == pytest.approx(0.2)
    assert result.mean_shift == pytest.approx(0.1)
    assert result.agreement == pytest.approx(2 / 3)
    # The worst text is 0.6 -> 0.4: cos([0.4, 0.6], [0.6, 0.4]) = 0.48 / 0.52.
    assert result.min_cosine == pytest.approx(0.48 / 0.52)
    assert compare([0.2, 0.7], [0.2, 0.7]).logit_cosine == pytest.approx(1.0)


def test_compare_rejects_mismatched_lists() -> None:
    with pytest.raises(ValueError, match="same length"):
        compare([0.1], [0.1, 0.2])


def test_held_out_split_is_disjoint_and_balanced() -> None:
    train, held = fidelity_examples()
    assert not {e.text for e in train} & {e.text for e in held}
    assert len(train) >= 200
    assert 0.4 < sum(e.unsafe for e in train) / len(train) < 0.6


def test_fitted_head_separates_clear_cases(probabilities: dict) -> None:
    # Real weights + a real fit: unseen clear-cut requests come out right (borderline ones need not).
    examples = fidelity_examples()[1]
    clear = [
        (p, e.unsafe) for p, e in zip(probabilities["torch-fp32"], examples, strict=True) if not e.borderline
    ]
    accuracy = sum((p >= 0.5) == unsafe for p, unsafe in clear) / len(clear)
    assert accuracy >= 0.9


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_backend_agrees_with_fp32_decisions(probabilities: dict, backend: str) -> None:
    result = compare(probabilities["torch-fp32"], probabilities[backend])
    assert result.agreement >= 0.95, result


def test_onnx_fp32_matches_torch_fp32(probabilities: dict) -> None:
    # Same weights, same precision: only kernel summation order differs.
    assert compare(probabilities["torch-fp32"], probabilities["onnx-fp32"]).max_shift < 1e-3


def test_onnx_int8_per_channel_shift_is_bounded(probabilities: dict) -> None:
    result = compare(probabilities["torch-fp32"], probabilities["onnx-int8"])
    assert result.max_shift < INT8_MAX_SHIFT, result
    assert result.mean_shift < INT8_MEAN_SHIFT, result
    assert result.max_shift > 0.0  # int8 really ran: identical outputs would mean fp32 slipped through


def test_bf16_shift_is_small(probabilities: dict) -> None:
    # bf16 keeps fp32's exponent range: no outlier clipping, only ~3 significant digits per value.
    result = compare(probabilities["torch-fp32"], probabilities["bf16"])
    assert result.max_shift < BF16_MAX_SHIFT, result
    assert result.mean_shift < BF16_MEAN_SHIFT, result
    assert result.max_shift > 0.0  # bf16 really ran

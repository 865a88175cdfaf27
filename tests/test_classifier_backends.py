"""Every backend (onnx int8/fp32, torch fp32/int8, bf16, auto) loads the trigger model, agrees, windows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crest_proxy.classifier import ClassifierSettings, CrestClassifier, load_classifier

BACKENDS = {
    "onnx-int8": dict(backend="onnx", quantize=True),
    "onnx-fp32": dict(backend="onnx", quantize=False),
    "torch-fp32": dict(backend="torch", quantize=False),
    "torch-int8": dict(backend="torch", quantize=True),
    "bf16": dict(backend="bf16"),
    # One timed call per backend and shape: the tiny model's timing then takes a fraction of a second.
    "auto": dict(backend="auto", autotune_iterations=1, autotune_max_tokens=128, max_batch_size=8),
}

TEXTS = [
    ("How do I bake bread?", False),
    ("kaboom", True),
    ("Le renard brun saute par-dessus le chien. kaboom!", True),
    ("Der schnelle braune Fuchs springt über den faulen Hund.", False),
    ("¿Cómo estás hoy? ZARQUON", True),
    ("Быстрая коричневая лиса прыгает через ленивую собаку.", False),
    ("今日はいい天気ですね。zarquon", True),
    ("我今天很好。你叫什么名字？", False),
    ("आज मौसम अच्छा है।", False),
    ("مرحبا كيف حالك؟ (kaboom)", True),
    ("", False),
]


@pytest.fixture(scope="module")
def classifiers(
    trigger_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, CrestClassifier]]:
    """One loaded classifier per backend/precision (ONNX artifacts shared with the other test files)."""
    cache = tmp_path_factory.getbasetemp() / "crest-artifacts"
    loaded = {
        name: load_classifier(ClassifierSettings(model=str(trigger_model_dir), cache_dir=cache, **kwargs))
        for name, kwargs in BACKENDS.items()
    }
    yield loaded
    for classifier in loaded.values():
        classifier.close()


def test_backends_report_what_they_run(
    classifiers: dict[str, CrestClassifier], trigger_model_dir: Path
) -> None:
    precisions = {name: c.info.precision for name, c in classifiers.items()}
    auto = precisions.pop("auto")
    assert precisions == {
        "onnx-int8": "int8",
        "onnx-fp32": "fp32",
        "torch-fp32": "fp32",
        "torch-int8": "int8",
        "bf16": "bf16",
    }
    assert auto in ("int8", "int8+bf16", "bf16")  # the backends that won a batch shape on this machine
    for name, classifier in classifiers.items():
        info = classifier.info
        assert (info.backend, info.device, info.max_tokens) == (name.split("-")[0], "cpu", 512)
        assert info.unsafe_label == "unsafe" and info.id2label == {0: "safe", 1: "unsafe"}
        assert info.revision.startswith("sha256:") and info.model == str(trigger_model_dir)
        assert (info.artifact_path is not None) == (info.backend in ("onnx", "auto"))
    onnx_paths = {classifiers["onnx-int8"].info.artifact_path, classifiers["onnx-fp32"].info.artifact_path}
    assert len(onnx_paths) == 2  # precision is part of the cache key


async def test_backends_agree_on_multilingual_texts(classifiers: dict[str, CrestClassifier]) -> None:
    expected = ["unsafe" if unsafe else "safe" for _, unsafe in TEXTS]
    results = {name: await c.classify([t for t, _ in TEXTS]) for name, c in classifiers.items()}
    for name, scores in results.items():
        assert [s.label for s in scores] == expected, name
        assert all(s.windows == 1 and 0.0 <= s.score <= 1.0 for s in scores)
    fp32 = zip(results["onnx-fp32"], results["torch-fp32"], strict=True)
    assert all(abs(a.score - b.score) < 1e-4 for a, b in fp32)
    int8 = zip(results["onnx-int8"], results["onnx-fp32"], strict=True)
    assert all(abs(a.score - b.score) < 0.05 for a, b in int8)
    bf16 = zip(results["bf16"], results["torch-fp32"], strict=True)
    assert all(abs(a.score - b.score) < 0.05 for a, b in bf16)


@pytest.mark.parametrize("name", list(BACKENDS))
@pytest.mark.parametrize("position", [600, 3000])
def test_trigger_far_past_the_first_window_is_found(
    classifiers: dict[str, CrestClassifier], name: str, position: int
) -> None:
    classifier = classifiers[name]
    filler = "the " * position  # one token per "the" in the trigger model's vocabulary
    long_safe, long_unsafe, first_window = classifier.classify_sync(
        [filler, filler + "kaboom", "the " * 509 + "kaboom"]
    )
    assert long_safe.label == "safe" and long_safe.windows > 1
    assert long_unsafe.label == "unsafe" and long_unsafe.windows == long_safe.windows
    assert first_window.label == "unsafe" and first_window.windows == 1  # a trigger at the window's last slot


def test_windows_count_follows_stride(classifiers: dict[str, CrestClassifier]) -> None:
    classifier = classifiers["onnx-int8"]
    # 510 content tokens per window, 446 new tokens per extra window (64 overlap).
    counts = {n: classifier.classify_sync(["the " * n])[0].windows for n in (1, 509, 511, 957, 958, 3000)}
    tokens = {n: n + 1 for n in counts}  # the trailing space is one more "▁" token
    assert counts == {n: 1 if t <= 510 else 1 + -(-(t - 510) // 446) for n, t in tokens.items()}
    assert counts[3000] == 7

"""Loading: artifact cache, atomic export, progress, offline/unreachable errors, labels, architectures."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crest_proxy.classifier import ClassifierSettings, load_classifier, onnx_export
from crest_proxy.errors import ModelNotAvailableError

PHASES = ("resolve:", "export:", "quantize:", "load:", "warm-up:", "ready:")


def copy_with_labels(src: Path, dst: Path, id2label: dict[int, str]) -> Path:
    """A copy of a checkpoint whose config.json says ``id2label``."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["id2label"] = {str(k): v for k, v in id2label.items()}
    config["label2id"] = {v: k for k, v in id2label.items()}
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_first_load_exports_then_the_cache_is_reused(
    trigger_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ClassifierSettings(model=str(trigger_model_dir), cache_dir=tmp_path)
    messages: list[str] = []
    with caplog.at_level(logging.INFO, logger="crest_proxy.classifier"):
        first = load_classifier(settings, progress=messages.append)
    first.close()
    assert not first.info.artifact_reused
    assert [next(m for m in messages if m.startswith(p)) for p in PHASES]  # every phase reported
    assert any("done in" in m for m in messages if m.startswith("export:"))
    assert any(
        r.name == "crest_proxy.classifier" and r.message.startswith("quantize:") for r in caplog.records
    )

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached artifact should have been reused")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    second = load_classifier(settings, progress=messages.append)
    assert second.info.artifact_reused and second.info.artifact_path == first.info.artifact_path
    assert [s.label for s in second.classify_sync(["hi", "kaboom"])] == ["safe", "unsafe"]
    second.close()


def test_a_crash_mid_export_leaves_no_half_artifact(
    trigger_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_export = onnx_export.export_onnx

    def crash(model_dir: Path, out_dir: Path, **kwargs: object) -> None:
        (out_dir / "model.onnx").write_bytes(b"half written")
        raise OSError("disk full")

    settings = ClassifierSettings(model=str(trigger_model_dir), cache_dir=tmp_path)
    monkeypatch.setattr(onnx_export, "export_onnx", crash)
    with pytest.raises(ModelNotAvailableError, match="disk full"):
        load_classifier(settings)
    assert list((tmp_path / "onnx").iterdir()) == []  # neither an entry nor a temp dir is left behind

    monkeypatch.setattr(onnx_export, "export_onnx", real_export)
    classifier = load_classifier(settings)
    assert not classifier.info.artifact_reused
    assert classifier.classify_sync(["zarquon"])[0].label == "unsafe"
    classifier.close()


def test_offline_without_a_cache_says_how_to_get_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ModelNotAvailableError) as err:
        load_classifier(ClassifierSettings(model="repelloai/CREST-Base", cache_dir=tmp_path / "c"))
    message = str(err.value)
    assert "crest-proxy model pull" in message and "--model" in message
    assert "HF_HOME" in message and str(tmp_path / "empty-hf") in message


def test_unreachable_hub_fails_fast_with_the_same_advice(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE") and "PROXY" not in k.upper()}
    # A closed loopback port stands in for an unreachable hub: no traffic leaves the machine.
    env.update(
        HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), CREST_PROXY_CACHE=str(tmp_path)
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "crest_proxy", "classify", "hello"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert time.monotonic() - started < 60
    assert "unreachable" in done.stderr and "crest-proxy model pull" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_classifier(ClassifierSettings(model=str(tmp_path / "nope"), cache_dir=tmp_path))


def test_unrecognised_labels_are_refused_before_any_export(
    trigger_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = copy_with_labels(trigger_model_dir, tmp_path / "m", {0: "LABEL_0", 1: "LABEL_1"})
    monkeypatch.setattr(onnx_export, "export_onnx", pytest.fail)
    with pytest.raises(ModelNotAvailableError) as err:
        load_classifier(ClassifierSettings(model=str(model), cache_dir=tmp_path / "c"))
    assert "'LABEL_0'" in str(err.value) and "'LABEL_1'" in str(err.value)


def test_synonym_labels_are_reported_in_the_models_words(trigger_model_dir: Path, tmp_path: Path) -> None:
    model = copy_with_labels(trigger_model_dir, tmp_path / "m", {0: "benign", 1: "Toxic"})
    classifier = load_classifier(ClassifierSettings(model=str(model), backend="torch", quantize=False))
    assert classifier.info.unsafe_label == "Toxic"
    assert [s.label for s in classifier.classify_sync(["hi", "kaboom"])] == ["benign", "Toxic"]
    classifier.close()


@pytest.fixture(scope="module")
def bert_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT classifier with a WordPiece tokenizer and 128 positions."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out = tmp_path_factory.mktemp("bert")
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "hello",
        "world",
        "bread",
        "bake",
        "how",
        "do",
        "i",
    ]
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt")).save_pretrained(str(out))
    config = BertConfig(
        vocab_size=5 + len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        id2label={0: "safe", 1: "unsafe"},
        label2id={"safe": 0, "unsafe": 1},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(str(out))
    return out


def test_a_bert_checkpoint_loads_on_both_backends(bert_model_dir: Path, tmp_path: Path) -> None:
    texts = ["how do i bake bread", "the quick brown fox " * 40, ""]
    results = {}
    for backend in ("onnx", "torch"):
        settings = ClassifierSettings(
            model=str(bert_model_dir), backend=backend, quantize=False, cache_dir=tmp_path
        )
        classifier = load_classifier(settings)
        assert classifier.info.max_tokens == 128  # capped by the model's position embeddings
        results[backend] = classifier.classify_sync(texts)
        classifier.close()
    assert [s.windows for s in results["onnx"]] == [1, 2, 1]
    for a, b in zip(results["onnx"], results["torch"], strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-4) and a.label == b.label and a.windows == b.windows


def fake_hub_cache(hf_home: Path, model_dir: Path, repo: str, commit: str) -> Path:
    """Lay ``model_dir`` out as the HF cache would after ``crest-proxy model pull`` of ``repo``."""
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    shutil.copytree(model_dir, root / "snapshots" / commit)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return root / "snapshots" / commit


def test_a_cached_hub_model_loads_offline_and_when_the_hub_is_unreachable(
    trigger_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    import requests

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = fake_hub_cache(tmp_path / "hf", trigger_model_dir, "acme/crest-tiny", commit)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    settings = ClassifierSettings(model="acme/crest-tiny", backend="torch", quantize=False)
    offline = load_classifier(settings)
    assert offline.info.revision == commit and offline.classify_sync(["kaboom"])[0].label == "unsafe"
    offline.close()

    def unreachable(*args: object, **kwargs: object) -> None:
        raise requests.ConnectionError("Max retries exceeded (NameResolutionError)")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    online = ClassifierSettings(model="acme/crest-tiny", offline=False, cache_dir=tmp_path / "c")
    fallback = load_classifier(online)  # onnx: the artifact is keyed by hub id and commit
    assert fallback.info.revision == commit and fallback.info.artifact_path is not None
    assert "acme--crest-tiny" in fallback.info.artifact_path.name
    assert fallback.classify_sync(["hi"])[0].label == "safe"
    fallback.close()
    assert snapshot.is_dir()

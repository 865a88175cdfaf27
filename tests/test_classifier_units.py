"""Pure pieces of the classifier: windows, packing, labels, settings, CPU presets, artifact keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crest_proxy.classifier.artifact import ArtifactRecipe, artifact_dir, find_artifact
from crest_proxy.classifier.labels import find_labels
from crest_proxy.classifier.loader import window_limit
from crest_proxy.classifier.onnx_export import quantization_preset, read_cpu_flags
from crest_proxy.classifier.packing import max_per_text, pad, plan_chunks
from crest_proxy.classifier.runtime import unsafe_probability
from crest_proxy.classifier.settings import ClassifierSettings, artifact_cache_dir, hub_cache_dir, is_offline
from crest_proxy.classifier.source import content_hash
from crest_proxy.classifier.windows import SpecialTokens, WindowShape, split_windows
from crest_proxy.errors import ModelNotAvailableError

SPECIALS = SpecialTokens(bos_id=0, eos_id=2, pad_id=1)


@given(n=st.integers(0, 2000), tokens=st.integers(3, 60), data=st.data())
def test_windows_cover_every_token_with_exact_overlap(n: int, tokens: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, tokens - 3))
    shape = WindowShape(tokens=tokens, overlap=overlap)
    ids = list(range(100, 100 + n))
    windows = split_windows(ids, shape, SPECIALS)
    contents = [w[1:-1] for w in windows]
    assert all(w[0] == 0 and w[-1] == 2 and len(w) <= tokens for w in windows)
    assert sorted(set().union(*map(set, contents))) == ids  # nothing dropped, nothing invented
    for left, right in zip(contents, contents[1:], strict=False):
        assert left[-overlap:] == right[:overlap] if overlap else left[-1] + 1 == right[0]
    expected = 1 if n <= shape.content else 1 + -(-(n - shape.content) // shape.stride)
    assert len(windows) == expected


def test_empty_text_is_one_window() -> None:
    assert split_windows([], WindowShape(512, 64), SPECIALS) == [[0, 2]]


def test_plan_chunks_sorts_by_length_and_caps_rows() -> None:
    lengths = [9, 3, 7, 3, 12, 5]
    chunks = plan_chunks(lengths, 4)
    assert [len(c) for c in chunks] == [4, 2]
    assert sorted(i for c in chunks for i in c) == list(range(6))
    flat = [lengths[i] for c in chunks for i in c]
    assert flat == sorted(lengths)


def test_pad_masks_real_tokens() -> None:
    batch = pad([[0, 5, 2], [0, 2]], pad_id=1)
    assert batch.input_ids.tolist() == [[0, 5, 2], [0, 2, 1]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch.rows == 2


def test_max_per_text_takes_each_texts_worst_window() -> None:
    assert max_per_text([0.1, 0.9, 0.2, 0.3, 0.05], [2, 1, 2]) == [0.9, 0.2, 0.3]


def test_unsafe_probability_is_a_stable_softmax_column() -> None:
    logits = np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]], dtype=np.float32)
    assert unsafe_probability(logits, 1) == pytest.approx([0.5, 0.75])


@pytest.mark.parametrize(
    ("id2label", "unsafe", "safe"),
    [
        ({0: "safe", 1: "unsafe"}, "unsafe", "safe"),
        ({"0": "Unsafe", "1": "Safe"}, "Unsafe", "Safe"),
        ({0: "benign", 1: "HARMFUL"}, "HARMFUL", "benign"),
        ({0: "toxic", 1: "non-toxic"}, "toxic", "non-toxic"),
    ],
)
def test_find_labels_accepts_synonyms_case_insensitively(id2label: dict, unsafe: str, safe: str) -> None:
    labels = find_labels(id2label, model="m")
    assert labels.unsafe_label == unsafe
    assert labels.safe_label == safe
    assert labels.label_for(0.5) == unsafe and labels.label_for(0.49) == safe


@pytest.mark.parametrize(
    "id2label", [{0: "LABEL_0", 1: "LABEL_1"}, {0: "unsafe"}, {0: "toxic", 1: "harmful"}]
)
def test_find_labels_names_what_it_found(id2label: dict) -> None:
    with pytest.raises(ModelNotAvailableError) as err:
        find_labels(id2label, model="some/model")
    assert "some/model" in str(err.value)
    assert all(repr(name) in str(err.value) for name in id2label.values())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": "tensorrt"},
        {"device": "tpu"},
        {"max_batch_size": 0},
        {"window_tokens": 2},
        {"window_tokens": 66, "window_overlap": 64},
        {"max_queue": 0},
    ],
)
def test_settings_reject_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="invalid ClassifierSettings"):
        ClassifierSettings(**kwargs)


def test_cache_dirs_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CREST_PROXY_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert artifact_cache_dir(ClassifierSettings()) == tmp_path / "c"
    assert artifact_cache_dir(ClassifierSettings(cache_dir=tmp_path / "x")) == tmp_path / "x"
    assert hub_cache_dir() == tmp_path / "hf" / "hub"


def test_offline_follows_hf_hub_offline_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_offline(ClassifierSettings())  # conftest sets HF_HUB_OFFLINE=1
    assert not is_offline(ClassifierSettings(offline=False))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert not is_offline(ClassifierSettings())


@pytest.mark.parametrize(
    ("machine", "flags", "preset"),
    [
        ("aarch64", set(), "arm64"),
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, "avx512_vnni"),
        ("x86_64", {"avx2", "avx512f"}, "avx512"),
        ("x86_64", {"avx2"}, "avx2"),
    ],
)
def test_quantization_preset_follows_cpu_flags(machine: str, flags: set, preset: str) -> None:
    assert quantization_preset(machine, frozenset(flags)) == preset


def test_read_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_vnni"}
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


def test_window_limit_caps_at_embeddable_positions() -> None:
    xlmr = {"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1}
    bert = {"model_type": "bert", "max_position_embeddings": 512}
    assert window_limit(ClassifierSettings(window_tokens=1024), xlmr) == 512
    assert window_limit(ClassifierSettings(window_tokens=1024), bert) == 512
    assert window_limit(ClassifierSettings(window_tokens=128), xlmr) == 128


def test_recipe_key_changes_with_every_input() -> None:
    base = ArtifactRecipe("m", "r1", "int8", "avx2", (("onnxruntime", "1.0"),))
    variants = [
        ArtifactRecipe("m2", "r1", "int8", "avx2", base.versions),
        ArtifactRecipe("m", "r2", "int8", "avx2", base.versions),
        ArtifactRecipe("m", "r1", "fp32", None, base.versions),
        ArtifactRecipe("m", "r1", "int8", "avx512_vnni", base.versions),
        ArtifactRecipe("m", "r1", "int8", "avx2", (("onnxruntime", "1.1"),)),
    ]
    assert len({base.key, *(v.key for v in variants)}) == 6
    assert base.key == ArtifactRecipe("m", "r1", "int8", "avx2", (("onnxruntime", "1.0"),)).key
    assert artifact_dir(Path("/c"), base).name.startswith("m-int8-")


def test_incomplete_artifact_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"half")
    assert find_artifact(tmp_path) is None  # no manifest: a crashed export


def test_content_hash_tracks_file_bytes(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / ".hidden").write_text("ignored")
    first = content_hash(tmp_path)
    (tmp_path / ".hidden").write_text("still ignored")
    assert content_hash(tmp_path) == first
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert content_hash(tmp_path) != first and first.startswith("sha256:")

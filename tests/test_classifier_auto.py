"""Backend ``auto``: timed once per machine, cached with the artifact, batches routed by shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crest_proxy.classifier import (
    ClassifierSettings,
    CrestClassifier,
    autoselect,
    load_classifier,
    loader,
    machine,
)
from crest_proxy.classifier.autoselect import plan_tuning, selection_from_dict, synthetic_batch
from crest_proxy.classifier.packing import pad
from crest_proxy.classifier.routing import (
    RoutedRuntime,
    RoutingTable,
    ShapeTiming,
    describe_table,
    nearest,
)
from crest_proxy.classifier.runtime import load_bf16_runtime, load_onnx_runtime
from crest_proxy.classifier.windows import SpecialTokens
from crest_proxy.cli import main

# Small knobs keep the one-time timing of the tiny model well under a second or two.
FAST = dict(autotune_iterations=1, autotune_max_tokens=128, max_batch_size=8, threads=2)
SPECIALS = SpecialTokens(bos_id=0, eos_id=2, pad_id=1)


def timing(rows: int, tokens: int, onnx: float, bf16: float) -> ShapeTiming:
    return ShapeTiming(rows, tokens, {"onnx-int8": onnx, "bf16": bf16})


# A table shaped like the issue author's AMX machine: int8 wins single short texts, bf16 the rest.
AMX_LIKE = RoutingTable(
    (
        timing(1, 16, 0.010, 0.020),
        timing(1, 64, 0.016, 0.025),
        timing(1, 512, 0.135, 0.092),
        timing(8, 64, 0.110, 0.080),
        timing(32, 64, 0.360, 0.290),
    )
)


def test_routing_follows_the_nearest_measured_shape() -> None:
    assert AMX_LIKE.backend_for(1, 16) == "onnx-int8"
    assert AMX_LIKE.backend_for(1, 40) == "onnx-int8"  # between 16 and 64: both neighbours say int8
    assert AMX_LIKE.backend_for(1, 400) == "bf16"  # log-nearest to 512
    assert AMX_LIKE.backend_for(6, 64) == "bf16" and AMX_LIKE.backend_for(2, 64) == "onnx-int8"
    assert AMX_LIKE.backend_for(32, 512) == "bf16"  # past the grid: the largest shapes stand in
    assert AMX_LIKE.wins() == {"onnx-int8": 2, "bf16": 3}
    assert AMX_LIKE.candidates == ("onnx-int8", "bf16")
    # Equidistant in log space (x4 rows either way): the bigger measured shape decides.
    assert nearest(AMX_LIKE.timings, 4, 64).rows == 8


def test_describe_table_shows_each_winner_and_its_margin() -> None:
    header, one, eight, thirty_two = describe_table(AMX_LIKE)
    assert header.split() == ["rows\\tokens", "16", "64", "512"]
    assert one.split() == ["1", "onnx-int8", "x2.00", "onnx-int8", "x1.56", "bf16", "x1.47"]
    assert eight.split() == ["8", "-", "bf16", "x1.38", "-"]
    assert thirty_two.split() == ["32", "-", "bf16", "x1.24", "-"]


def test_plan_times_single_windows_always_and_batches_within_the_budget() -> None:
    plan = plan_tuning(32, 512, token_budget=2048, iterations=2)
    assert plan.shapes == (
        (1, 16), (1, 64), (1, 128), (1, 512),
        (8, 16), (8, 64), (8, 128),
        (32, 16), (32, 64),
    )  # fmt: skip
    small = plan_tuning(4, 100, token_budget=64, iterations=1)
    assert small.shapes == ((1, 16), (1, 64), (1, 100), (4, 16))
    batch = synthetic_batch(4, 16, SPECIALS)
    assert batch.input_ids.shape == (4, 16) and batch.attention_mask.all()


@pytest.fixture(scope="module")
def artifact_dir(trigger_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trigger model's int8 artifact, from the cache the other classifier tests share."""
    cache = tmp_path_factory.getbasetemp() / "crest-artifacts"
    settings = ClassifierSettings(model=str(trigger_model_dir), backend="onnx", cache_dir=cache)
    classifier = load_classifier(settings)
    classifier.close()
    assert classifier.info.artifact_path is not None
    return classifier.info.artifact_path


def test_routed_runtime_sends_each_shape_to_its_winner_with_identical_scores(
    trigger_model_dir: Path, artifact_dir: Path
) -> None:
    onnx = load_onnx_runtime(artifact_dir / "model.onnx", threads=2, unsafe_index=1, precision="int8")
    bf16 = load_bf16_runtime(trigger_model_dir, device="cpu", threads=2, unsafe_index=1)
    routed = RoutedRuntime({"onnx-int8": onnx.runtime, "bf16": bf16.runtime}, AMX_LIKE)
    ids = json.loads((trigger_model_dir / "synthetic.json").read_text())["trigger_ids"]
    single = pad([[0, 5, ids[0], *[6] * 12, 2]], SPECIALS.pad_id)  # 1 x 16: int8 in AMX_LIKE
    windows = [[0, *[5] * 62, 2], [0, ids[1], *[7] * 40, 2], [0, 7, 2]]  # each short: int8 (1 x <= 64)
    batch = pad(windows * 2 + windows[:2], SPECIALS.pad_id)
    long = [0, *[5] * 500, ids[0], 2]  # 1 x 503: bf16
    assert np.array_equal(routed.run(single), onnx.runtime.run(single))
    # Each row goes where its own length (as if alone) goes, never where its batch's shape would send it:
    # backends score a text differently, so batch-mates must not pick a row's backend (issue 14).
    assert np.array_equal(routed.run(batch), onnx.runtime.run(batch))
    mixed = routed.run(pad([windows[1], long], SPECIALS.pad_id))
    assert mixed[0] == onnx.runtime.run(pad([windows[1]], SPECIALS.pad_id))[0]
    assert mixed[1] == bf16.runtime.run(pad([long], SPECIALS.pad_id))[0]
    assert routed.calls == {"onnx-int8": 3, "bf16": 1}
    assert (routed.run(batch) > 0.5).tolist() == [False, True, False, False, True, False, False, True]
    with pytest.raises(ValueError, match="not loaded"):
        RoutedRuntime({"onnx-int8": onnx.runtime}, AMX_LIKE)


@pytest.fixture(scope="module")
def auto_classifier(
    trigger_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrestClassifier]:
    """``auto`` over a cache of its own, so that its first load really times the backends."""
    cache = tmp_path_factory.mktemp("auto-cache")
    classifier = load_classifier(ClassifierSettings(model=str(trigger_model_dir), cache_dir=cache, **FAST))
    yield classifier
    classifier.close()


def test_auto_is_the_default_and_times_a_bounded_set_of_shapes(auto_classifier: CrestClassifier) -> None:
    assert ClassifierSettings().backend == "auto"
    info = auto_classifier.info
    assert info.backend == "auto" and info.artifact_path is not None
    assert info.rss_bytes is not None and info.rss_bytes > 50 * 2**20
    if not machine.detect_machine(2, "auto").native_bf16:
        assert info.selection is None and info.precision == "int8"  # nothing to choose between
        return
    selection = info.selection
    assert selection is not None and not selection.reused
    # Timing cost is bounded by the work below (FAST: five shapes), not by a wall clock: speed belongs
    # in benchmarks/classifier.py, and a timed assertion flakes on a shared CI machine.
    assert selection.tuning_seconds > 0
    assert selection.table.candidates == ("onnx-int8", "bf16")
    assert [(t.rows, t.tokens) for t in selection.table.timings] == [
        (1, 16),
        (1, 64),
        (1, 128),
        (1, 512),
        (8, 16),
    ]
    assert all(s > 0 for t in selection.table.timings for s in t.seconds.values())
    wins = selection.table.wins()
    kept = [precision for name, precision in (("onnx-int8", "int8"), ("bf16", "bf16")) if wins[name]]
    assert info.precision == "+".join(kept)  # a backend that won no shape was released
    cached = json.loads(Path(selection.cache_file or "").read_text())
    assert cached["machine"]["threads"] == 2 and cached["versions"]["torch"]
    assert selection_from_dict(cached).table == selection.table


async def test_auto_gives_the_same_verdicts_as_onnx(
    auto_classifier: CrestClassifier, trigger_model_dir: Path, artifact_dir: Path
) -> None:
    texts = [
        "How do I bake bread?",
        "kaboom",
        "¿Cómo estás? ZARQUON",
        "我今天很好。",
        "the " * 900 + "kaboom",
    ]
    scores = await auto_classifier.classify(texts)
    assert [s.label for s in scores] == ["safe", "unsafe", "unsafe", "safe", "unsafe"]
    assert scores[-1].windows == 2


def test_a_second_start_reuses_the_timing_and_other_threads_retime(
    trigger_model_dir: Path, auto_classifier: CrestClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = auto_classifier.info.selection
    if first is None:
        pytest.skip("this CPU has no native bf16: auto runs onnx alone and times nothing")
    real = autoselect.time_backends
    calls: list[int] = []

    def counted(*args: object, **kwargs: object) -> RoutingTable:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(autoselect, "time_backends", counted)
    cache = Path(first.cache_file or "").parents[2]
    settings = ClassifierSettings(model=str(trigger_model_dir), cache_dir=cache, **FAST)
    messages: list[str] = []
    again = load_classifier(settings, progress=messages.append)
    again.close()
    assert calls == [] and again.info.selection is not None and again.info.selection.reused
    assert again.info.selection.table == first.table
    assert again.info.precision == auto_classifier.info.precision
    # A backend the cached timing never picks is not even loaded (no torch import, no second model).
    assert any("not loading it" in m for m in messages) == (first.table.wins()["bf16"] == 0)
    one_thread = load_classifier(
        ClassifierSettings(model=str(trigger_model_dir), cache_dir=cache, **{**FAST, "threads": 1})
    )
    one_thread.close()
    assert calls == [1]  # the thread count is part of the key
    assert len(list(Path(first.cache_file or "").parent.glob("autotune-*.json"))) == 2


def test_model_info_shows_the_choice(
    auto_classifier: CrestClassifier, trigger_model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    selection = auto_classifier.info.selection
    if selection is None:
        pytest.skip("this CPU has no native bf16: auto runs onnx alone")
    cache = Path(selection.cache_file or "").parents[2]
    assert main(["model", "info", "--model", str(trigger_model_dir), "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "auto timing:" in out and "shapes won: onnx-int8" in out and "rows\\tokens" in out
    assert (
        main(["model", "info", "--model", str(trigger_model_dir), "--cache-dir", str(cache), "--json"]) == 0
    )
    [artifact] = json.loads(capsys.readouterr().out)["artifacts"]
    assert artifact["selections"][0]["machine"]["threads"] in (1, 2)


def test_without_native_bf16_auto_runs_onnx_alone(
    trigger_model_dir: Path, artifact_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The only fake here: a CPU without bf16 instructions, which this machine may not be.
    monkeypatch.setattr(machine, "read_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    messages: list[str] = []
    cache = artifact_dir.parents[1]
    settings = ClassifierSettings(model=str(trigger_model_dir), cache_dir=cache, device="cpu", **FAST)
    classifier = load_classifier(settings, progress=messages.append)
    classifier.close()
    assert classifier.info.selection is None and classifier.info.precision == "int8"
    assert any("no native bf16" in m for m in messages)


def test_a_bf16_candidate_that_cannot_load_leaves_onnx_running(
    trigger_model_dir: Path, artifact_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fakes for what cannot happen here: a bf16 CPU whose torch cannot load the model in bf16.
    monkeypatch.setattr(machine, "read_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no bf16 kernels for this op")

    monkeypatch.setattr(loader, "load_bf16_runtime", broken)
    messages: list[str] = []
    settings = ClassifierSettings(model=str(trigger_model_dir), cache_dir=artifact_dir.parents[1], **FAST)
    classifier = load_classifier(settings, progress=messages.append)
    try:
        assert classifier.info.backend == "auto" and classifier.info.precision == "int8"
        assert classifier.classify_sync(["kaboom"])[0].label == "unsafe"
    finally:
        classifier.close()
    assert any("bf16 candidate failed to load" in m and "no bf16 kernels" in m for m in messages)


def test_machine_probes_read_proc(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu avx2\n")
    assert machine.cpu_model(cpuinfo) == "Example CPU 9000"
    assert (machine.resident_bytes() or 0) > 0
    found = machine.detect_machine(3, "cpu")
    assert found.threads == 3 and found.gpu is None
    assert set(found.features) <= set(machine.MATMUL_FEATURES)


@pytest.mark.parametrize(
    "kwargs", [{"autotune_iterations": 0}, {"autotune_max_tokens": 8}, {"backend": "int4"}]
)
def test_settings_reject_bad_auto_knobs(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="invalid ClassifierSettings"):
        ClassifierSettings(**kwargs)

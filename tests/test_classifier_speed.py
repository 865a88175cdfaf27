"""Speed measures that are behaviour: cost-planned chunks stop short windows paying a long one's padding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crest_proxy.classifier import ClassifierSettings, CrestClassifier, load_classifier
from crest_proxy.classifier.packing import CALL_OVERHEAD_TOKENS, plan_chunks


def padded_cost(lengths: list[int], chunks: list[list[int]]) -> int:
    """What the planner minimises: a call's overhead plus rows x the chunk's longest window."""
    return sum(CALL_OVERHEAD_TOKENS + len(c) * max(lengths[i] for i in c) for c in chunks)


def test_one_long_window_no_longer_pads_a_batch_of_short_ones() -> None:
    lengths = [16] * 31 + [512]
    chunks = plan_chunks(lengths, 32)
    assert [sorted(lengths[i] for i in c) for c in chunks] == [[16] * 31, [512]]
    assert padded_cost(lengths, chunks) == 2 * CALL_OVERHEAD_TOKENS + 31 * 16 + 512  # was 32 x 512


def test_mixed_lengths_split_into_length_buckets() -> None:
    lengths = [512, 16, 128, 64] * 8
    chunks = plan_chunks(lengths, 32)
    assert [{lengths[i] for i in c} for c in chunks] == [{16}, {64}, {128}, {512}]


def test_similar_lengths_keep_full_chunks() -> None:
    # Splitting would save a few padded tokens and cost a call: not worth it.
    lengths = [60, 61, 62, 63, 64] * 8
    assert [len(c) for c in plan_chunks(lengths, 16)] == [16, 16, 8]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=2, max_value=512), max_size=80), st.integers(min_value=1, max_value=40))
def test_plans_are_partitions_in_length_order_and_never_cost_more(lengths: list[int], max_rows: int) -> None:
    chunks = plan_chunks(lengths, max_rows)
    flat = [i for c in chunks for i in c]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    assert all(1 <= len(c) <= max_rows for c in chunks)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    full = [order[i : i + max_rows] for i in range(0, len(order), max_rows)]
    assert padded_cost(lengths, chunks) <= padded_cost(lengths, full)


@pytest.fixture(scope="module")
def onnx_int8(trigger_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrestClassifier]:
    """The trigger model on onnx int8 (artifact shared with the other classifier tests)."""
    cache = tmp_path_factory.getbasetemp() / "crest-artifacts"
    settings = ClassifierSettings(model=str(trigger_model_dir), backend="onnx", cache_dir=cache)
    classifier = load_classifier(settings)
    yield classifier
    classifier.close()


def test_the_engine_runs_short_and_long_windows_in_separate_calls(onnx_int8: CrestClassifier) -> None:
    texts = ["hello there"] * 30 + ["kaboom"] + ["the " * 500 + "zarquon"]
    scores = onnx_int8.classify_sync(texts)
    assert [s.label for s in scores] == ["safe"] * 30 + ["unsafe", "unsafe"]
    stats = onnx_int8.stats
    assert stats.model_calls == 2 and dict(stats.batch_sizes) == {31: 1, 1: 1}

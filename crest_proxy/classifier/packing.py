"""Pack windows into padded model batches and fold window scores back into one score per text (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PaddedBatch:
    """A rectangular batch: ``input_ids`` and ``attention_mask`` of shape (rows, longest window)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray

    @property
    def rows(self) -> int:
        """How many windows the batch holds."""
        return int(self.input_ids.shape[0])


# What one model call costs beyond its padded tokens, in padded-token equivalents: onnx int8, CREST-Base,
# 2 cores, 1-row vs 8-row calls put it at 14-34 tokens. Splitting a chunk pays this once more; padding
# pays rows x width. See README "Speed".
CALL_OVERHEAD_TOKENS = 32
# Re-plan only when it saves at least this share of the padded tokens: the cost model is rough.
REPLAN_SAVING = 0.2


def plan_chunks(lengths: Sequence[int], max_rows: int) -> list[list[int]]:
    """Group window indices into chunks of at most ``max_rows``, sorted by length to limit padding.

    Full chunks in length order, unless splitting elsewhere saves much padding: 31 short windows and one
    of 512 tokens make one 32 x 512 call (16k padded tokens) full-chunked, two calls (1k) split.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    full = [order[i : i + max_rows] for i in range(0, len(order), max_rows)]
    widths = [lengths[i] for i in order]
    bounds, cost = _cheapest_bounds(widths, max_rows)
    if cost > (1 - REPLAN_SAVING) * _cost(widths, [len(c) for c in full]):
        return full
    return [order[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


def _cost(widths: Sequence[int], sizes: Sequence[int]) -> int:
    total, start = 0, 0
    for size in sizes:
        total += CALL_OVERHEAD_TOKENS + size * widths[start + size - 1]
        start += size
    return total


def _cheapest_bounds(widths: Sequence[int], max_rows: int) -> tuple[list[int], int]:
    """Chunk boundaries over ascending ``widths`` minimising calls x overhead + padded tokens (DP)."""
    best = [0] + [0] * len(widths)
    cut = [0] * (len(widths) + 1)
    for end in range(1, len(widths) + 1):
        best[end], cut[end] = min(
            (best[start] + CALL_OVERHEAD_TOKENS + (end - start) * widths[end - 1], start)
            for start in range(max(0, end - max_rows), end)
        )
    bounds = [len(widths)]
    while bounds[-1] > 0:
        bounds.append(cut[bounds[-1]])
    return bounds[::-1], best[-1]


def pad(windows: Sequence[Sequence[int]], pad_id: int) -> PaddedBatch:
    """Right-pad ``windows`` to the longest one; the mask marks real tokens."""
    width = max(len(w) for w in windows)
    ids = np.full((len(windows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), width), dtype=np.int64)
    for row, window in enumerate(windows):
        ids[row, : len(window)] = window
        mask[row, : len(window)] = 1
    return PaddedBatch(input_ids=ids, attention_mask=mask)


def max_per_text(scores: Sequence[float], counts: Sequence[int]) -> list[float]:
    """A text is as unsafe as its worst window: the max over each text's consecutive window scores."""
    result, start = [], 0
    for count in counts:
        result.append(max(scores[start : start + count]))
        start += count
    return result

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


def plan_chunks(lengths: Sequence[int], max_rows: int) -> list[list[int]]:
    """Group window indices into chunks of at most ``max_rows``, sorted by length to limit padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + max_rows] for i in range(0, len(order), max_rows)]


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

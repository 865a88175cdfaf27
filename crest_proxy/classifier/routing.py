"""Which backend runs a batch of a given shape: the measured table, and the runtime that follows it."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crest_proxy.classifier.machine import Machine
from crest_proxy.classifier.packing import PaddedBatch
from crest_proxy.classifier.runtime import Runtime


@dataclass(frozen=True)
class ShapeTiming:
    """The best seconds per call each backend took on one batch shape (rows x padded tokens)."""

    rows: int
    tokens: int
    seconds: Mapping[str, float]

    @property
    def winner(self) -> str:
        """The fastest backend on this shape."""
        return min(self.seconds, key=self.seconds.__getitem__)

    @property
    def margin(self) -> float:
        """How many times slower the runner-up is than the winner (1.0 with one backend)."""
        ordered = sorted(self.seconds.values())
        return ordered[1] / ordered[0] if len(ordered) > 1 and ordered[0] > 0 else 1.0


@dataclass(frozen=True)
class RoutingTable:
    """Measured shapes; a batch goes to the winner of the nearest one (log scale in rows and in tokens)."""

    timings: tuple[ShapeTiming, ...]

    def __post_init__(self) -> None:
        if not self.timings:
            raise ValueError("a routing table needs at least one measured shape")

    @property
    def candidates(self) -> tuple[str, ...]:
        """The backends that were timed, in the order they were given."""
        return tuple(self.timings[0].seconds)

    def backend_for(self, rows: int, tokens: int) -> str:
        """The backend for a batch of ``rows`` windows padded to ``tokens`` tokens."""
        return nearest(self.timings, rows, tokens).winner

    def wins(self) -> dict[str, int]:
        """How many measured shapes each backend won."""
        counts = Counter(t.winner for t in self.timings)
        return {name: counts[name] for name in self.candidates}


def nearest(timings: Sequence[ShapeTiming], rows: int, tokens: int) -> ShapeTiming:
    """The measured shape closest to (rows, tokens) in log2 space; ties go to the bigger measured shape.

    Cost per token grows smoothly with both batch size and length, so a shape's neighbours on a log
    grid are the best predictors; past the grid's edge the largest measured shapes stand in.
    """

    def distance(t: ShapeTiming) -> tuple[float, int]:
        d = math.log2(max(rows, 1) / t.rows) ** 2 + math.log2(max(tokens, 1) / t.tokens) ** 2
        return (round(d, 9), -t.rows * t.tokens)

    return min(timings, key=distance)


def describe_table(table: RoutingTable) -> list[str]:
    """A rows x tokens grid of the winners, each with how much faster it was than the runner-up."""
    widths = sorted({t.tokens for t in table.timings})
    by_shape = {(t.rows, t.tokens): t for t in table.timings}
    rows = sorted({t.rows for t in table.timings})
    cells = {key: f"{t.winner} x{t.margin:.2f}" for key, t in by_shape.items()}
    size = max(len(c) for c in cells.values()) + 2
    lines = ["rows\\tokens " + "".join(f"{w:>{size}}" for w in widths)]
    for r in rows:
        lines.append(f"{r:>11} " + "".join(f"{cells.get((r, w), '-'):>{size}}" for w in widths))
    return lines


@dataclass(frozen=True)
class Selection:
    """What backend ``auto`` runs each batch shape on, on which machine, and where the timing came from."""

    table: RoutingTable
    machine: Machine
    reused: bool
    cache_file: str | None
    tuning_seconds: float

    def summary(self) -> str:
        """One line: the candidates and how many measured shapes each won."""
        wins = ", ".join(f"{name} {count}" for name, count in self.table.wins().items())
        source = "cached timing" if self.reused else f"timed in {self.tuning_seconds:.1f} s"
        return f"shapes won: {wins} ({source})"


class RoutedRuntime:
    """Runs each batch on the backend its shape is routed to; counts the calls each backend got."""

    def __init__(self, runtimes: Mapping[str, Runtime], table: RoutingTable) -> None:
        missing = {t.winner for t in table.timings} - set(runtimes)
        if missing:
            raise ValueError(f"the routing table routes to backends that are not loaded: {sorted(missing)}")
        self._runtimes = dict(runtimes)
        self._table = table
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()

    def run(self, batch: PaddedBatch) -> np.ndarray:
        """P(unsafe) for every row of ``batch``, each row from the backend its own length is routed to.

        Per row, as if the row were alone (1 x its length): backends score a text differently (int8 vs
        bf16), so routing by the batch's shape would let batch-mates change a text's score (issue 14).
        """
        lengths = batch.attention_mask.sum(axis=1)
        names = [self._table.backend_for(1, int(n)) for n in lengths.tolist()]
        scores = np.zeros(batch.rows)
        for name in sorted(set(names)):
            picked = [i for i, n in enumerate(names) if n == name]
            width = int(lengths[picked].max())
            sub = PaddedBatch(batch.input_ids[picked, :width], batch.attention_mask[picked, :width])
            with self._lock:
                self._calls[name] += 1
            scores[picked] = self._runtimes[name].run(sub)
        return scores

    @property
    def calls(self) -> dict[str, int]:
        """Model calls per backend so far."""
        with self._lock:
            return dict(self._calls)

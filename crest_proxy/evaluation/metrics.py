"""Classification metrics over (score, label) pairs: confusion counts, AUC, PR/ROC points, threshold search.

Pure functions over sequences (no I/O, no numpy). A text is predicted unsafe when ``score >= threshold``,
exactly as ``policy.model.evaluate`` decides, so a threshold chosen here means the same in a policy.
Labels are booleans: True for unsafe (the positive class).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary decision at one threshold."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float:
        """TP / predicted positives (0 when nothing was predicted positive)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """TP / actual positives (the true positive rate)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def fpr(self) -> float:
        """FP / actual negatives."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def f1(self) -> float:
        """The harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return _ratio(2 * p * r, p + r)


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def confusion_at(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> Confusion:
    """The confusion counts when ``score >= threshold`` is predicted unsafe."""
    tp = fp = tn = fn = 0
    for score, unsafe in zip(scores, labels, strict=True):
        flagged = score >= threshold
        tp += flagged and unsafe
        fp += flagged and not unsafe
        tn += not flagged and not unsafe
        fn += not flagged and unsafe
    return Confusion(tp, fp, tn, fn)


def confusion_of(predicted: Sequence[bool], labels: Sequence[bool]) -> Confusion:
    """The confusion counts of given predictions (e.g. each text at its own language's threshold)."""
    pairs = list(zip(predicted, labels, strict=True))
    tp = sum(p and u for p, u in pairs)
    fp = sum(p and not u for p, u in pairs)
    fn = sum(u and not p for p, u in pairs)
    return Confusion(tp, fp, len(pairs) - tp - fp - fn, fn)


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """ROC AUC: the chance a random unsafe text outscores a random safe one (ties count half).

    None when one class is absent (the AUC is undefined). Computed by ranks (Mann-Whitney U), O(n log n).
    """
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid_rank = (i + j) / 2 + 1  # tied scores share the mean of their ranks
        rank_sum += mid_rank * sum(labels[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def candidate_thresholds(scores: Sequence[float]) -> list[float]:
    """Every threshold that changes a decision: the distinct scores, highest first."""
    return sorted(set(scores), reverse=True)


def sweep(scores: Sequence[float], labels: Sequence[bool]) -> list[tuple[float, Confusion]]:
    """(threshold, confusion) at each candidate threshold, highest threshold first, in O(n log n)."""
    positives = sum(labels)
    negatives = len(labels) - positives
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: p[0], reverse=True)
    out: list[tuple[float, Confusion]] = []
    tp = fp = 0
    for i, (score, unsafe) in enumerate(pairs):
        tp += unsafe
        fp += not unsafe
        if i + 1 == len(pairs) or pairs[i + 1][0] != score:
            out.append((score, Confusion(tp, fp, negatives - fp, positives - tp)))
    return out


def roc_points(scores: Sequence[float], labels: Sequence[bool]) -> list[tuple[float, float]]:
    """(FPR, TPR) from (0, 0) to (1, 1), one point per candidate threshold."""
    return [(0.0, 0.0), *((c.fpr, c.recall) for _, c in sweep(scores, labels))]


def pr_points(scores: Sequence[float], labels: Sequence[bool]) -> list[tuple[float, float]]:
    """(recall, precision), one point per candidate threshold, highest threshold first."""
    return [(c.recall, c.precision) for _, c in sweep(scores, labels)]


def best_f1_threshold(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """The threshold with the highest F1 (the highest such threshold on ties); None without positives."""
    if not any(labels):
        return None
    best = max(sweep(scores, labels), key=lambda tc: (tc[1].f1, tc[0]))
    return best[0]


def lowest_threshold_for_fpr(scores: Sequence[float], labels: Sequence[bool], target: float) -> float | None:
    """The lowest threshold whose FPR is at most ``target`` (the most recall that FPR allows).

    None when even the highest score lets more safe texts through than ``target`` allows.
    """
    meeting = [t for t, c in sweep(scores, labels) if c.fpr <= target]
    return min(meeting) if meeting else None


def floor_threshold(value: float, digits: int = 4) -> float:
    """``value`` rounded down to ``digits`` decimals (never above its score), and at least 10^-digits."""
    scale = float(10**digits)
    return max(math.floor(value * scale) / scale, 1 / scale)


def histogram(scores: Sequence[float], bins: int = 20) -> list[int]:
    """Counts of scores in ``bins`` equal bins over 0..1 (a score of 1.0 falls in the last)."""
    counts = [0] * bins
    for score in scores:
        counts[min(int(score * bins), bins - 1)] += 1
    return counts

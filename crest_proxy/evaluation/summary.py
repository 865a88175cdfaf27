"""Per-language metrics at the policy's thresholds, and a recommended threshold per language (pure)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crest_proxy.evaluation import metrics
from crest_proxy.evaluation.runner import Scored

_POLICY_KEY = re.compile(r"[a-z]{2}")
MIN_SAMPLES = 30  # fewer texts than this in a language: listed, not tuned (one text moves F1 too much)


@dataclass(frozen=True)
class GroupMetrics:
    """Metrics of one language (or all texts) at the thresholds the policy applies."""

    n: int
    positives: int
    negatives: int
    confusion: metrics.Confusion
    auc: float | None
    threshold: float | None  # the policy's threshold (None for "overall": each text had its language's)

    def as_json(self) -> dict[str, object]:
        """The ``metrics.json`` entry."""
        c = self.confusion
        return {
            "n": self.n, "positives": self.positives, "negatives": self.negatives,
            "precision": round(c.precision, 6), "recall": round(c.recall, 6), "f1": round(c.f1, 6),
            "fpr": round(c.fpr, 6), "auc": None if self.auc is None else round(self.auc, 6),
            "threshold": self.threshold, "tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn,
        }  # fmt: skip


@dataclass(frozen=True)
class Recommendation:
    """A threshold to put in the policy for one language, and what it gives on this data."""

    threshold: float
    method: str
    confusion: metrics.Confusion


@dataclass(frozen=True)
class Evaluation:
    """Everything the report shows."""

    overall: GroupMetrics
    languages: Mapping[str, GroupMetrics]
    recommended: Mapping[str, Recommendation]
    not_tuned: Mapping[str, str]  # language -> why it was not tuned
    scores: Mapping[str, tuple[tuple[float, ...], tuple[bool, ...]]]
    target_fpr: float | None


def evaluate(
    scored: Sequence[Scored], *, target_fpr: float | None = None, min_samples: int = MIN_SAMPLES
) -> Evaluation:
    """Metrics overall and per language, and a recommended threshold where the data allows one."""
    by_lang: dict[str, list[Scored]] = {}
    for item in scored:
        by_lang.setdefault(item.lang, []).append(item)
    languages = {lang: _group(items, items[0].threshold) for lang, items in sorted(by_lang.items())}
    recommended, not_tuned = {}, {}
    for lang, items in sorted(by_lang.items()):
        scores, labels = [s.score for s in items], [s.unsafe for s in items]
        why = _why_not_tuned(lang, labels, min_samples)
        pick = None if why else _recommend(scores, labels, target_fpr)
        if pick is None:
            not_tuned[lang] = why or f"no threshold keeps the false-positive rate at or under {target_fpr:g}"
        else:
            recommended[lang] = pick
    return Evaluation(
        overall=_group(scored, None),
        languages=languages,
        recommended=recommended,
        not_tuned=not_tuned,
        scores={
            lang: (tuple(s.score for s in v), tuple(s.unsafe for s in v))
            for lang, v in sorted(by_lang.items())
        },
        target_fpr=target_fpr,
    )


def _group(items: Sequence[Scored], threshold: float | None) -> GroupMetrics:
    scores, labels = [s.score for s in items], [s.unsafe for s in items]
    confusion = metrics.confusion_of([s.score >= s.threshold for s in items], labels)
    positives = sum(labels)
    return GroupMetrics(
        len(items), positives, len(items) - positives, confusion, metrics.auc(scores, labels), threshold
    )


def _why_not_tuned(lang: str, labels: Sequence[bool], min_samples: int) -> str | None:
    if not _POLICY_KEY.fullmatch(lang):  # policies key languages by ISO-639-1 code (policy.validation)
        return "not an ISO-639-1 code, so no policy can key a threshold on it"
    positives = sum(labels)
    if len(labels) < min_samples:
        return f"only {len(labels)} samples (at least {min_samples} needed)"
    if not positives or positives == len(labels):
        return f"no {'safe' if positives else 'unsafe'} samples"
    return None


def _recommend(
    scores: Sequence[float], labels: Sequence[bool], target_fpr: float | None
) -> Recommendation | None:
    """Max F1, or the lowest threshold meeting ``target_fpr``; written rounded down to 4 decimals."""
    if target_fpr is None:
        raw, method = metrics.best_f1_threshold(scores, labels), "max F1"
    else:
        raw, method = metrics.lowest_threshold_for_fpr(scores, labels, target_fpr), f"FPR <= {target_fpr:g}"
    if raw is None:
        return None
    threshold = metrics.floor_threshold(raw)
    confusion = metrics.confusion_at(scores, labels, threshold)  # as written: rounding may admit a score
    if target_fpr is not None and confusion.fpr > target_fpr:  # … that breaks the target: round up instead
        threshold = min(math.ceil(raw * 10_000) / 10_000, 1.0)
        confusion = metrics.confusion_at(scores, labels, threshold)
    return Recommendation(threshold, method, confusion)

"""PURE: which texts an unsafe reading is about, and which of their characters a redaction replaces.

A reading (one text, or a junction of several) that the classifier flags is cut into sentences; each
sentence flagged on its own is replaced, in every text it covers, minus its surrounding whitespace and
markdown (``segment.redaction_span``). When no sentence is unsafe alone, the harm is in the combination
and the texts the reading is blamed on go whole. A junction whose unsafe sentences all lie in the text
before it (already judged on its own) says nothing about the text after it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from crest_proxy.policy.model import Policy, match_rules, merge_spans
from crest_proxy.screening.normalize import Normalized
from crest_proxy.screening.readings import Reading
from crest_proxy.screening.segment import Segment, redaction_span
from crest_proxy.types import Action, Direction, Span, Verdict


@dataclass(frozen=True)
class Finding:
    """What localisation found for one text: its P(unsafe) and the spans CREST asks to replace."""

    score: float
    spans: tuple[Span, ...]


def blame_scores(readings: Sequence[Reading], scores: Sequence[float], count: int) -> list[float]:
    """Each text's P(unsafe): the highest over the readings blamed on it."""
    out = [0.0] * count
    for reading, score in zip(readings, scores, strict=True):
        for i in reading.blame:
            out[i] = max(out[i], score)
    return out


def reading_threshold(reading: Reading, thresholds: Sequence[float]) -> float:
    """The strictest threshold among the texts a reading is made of."""
    return min(thresholds[p.index] for p in reading.pieces)


def findings(
    texts: Sequence[str],
    readings: Sequence[Reading],
    scores: Sequence[float],
    flagged: Sequence[int],
    sentences: Sequence[tuple[int, Segment, float]],
    thresholds: Sequence[float],
) -> dict[int, Finding]:
    """Per text touched by a flagged reading: its score and spans (``sentences``: reading, range, score)."""
    best = {i: scores[i] for i in range(len(texts))}  # the first readings are the texts alone
    spans: dict[int, list[Span]] = {}
    own: dict[int, list[Span]] = {}  # what each text's own reading found: it explains junctions through it
    for r in sorted(flagged):
        reading = readings[r]
        limit = reading_threshold(reading, thresholds)
        hits = [seg for k, seg, score in sentences if k == r and score >= limit]
        located = [_located(reading, seg) for seg in hits]
        if r >= len(texts):  # a junction: only harm that no text's own finding explains is new
            located = [locs for locs in located if not _explained(locs, own)]
            if not located and (hits or any(p.index in own for p in reading.pieces)):
                continue
        found = [loc for locs in located for loc in locs]
        if not hits:
            found = [(i, Span(0, len(texts[i]), "crest")) for i in reading.blame]
        for i, span in found:
            spans.setdefault(i, []).append(span)
            if r < len(texts):
                own.setdefault(i, []).append(span)
            best[i] = max(best[i], scores[r])
    return {i: Finding(best[i], tuple(found)) for i, found in spans.items()}


def _explained(locs: Sequence[tuple[int, Span]], own: dict[int, list[Span]]) -> bool:
    """Whether a flagged junction sentence overlaps an unsafe sentence found in a text on its own.

    Such a sentence is unsafe because of that text (e.g. one JSON value among short neighbours): blaming
    the neighbours it runs into would redact safe text. A word split across the boundary lies outside
    every own finding, so it is still caught.
    """
    return any(s.start < span.end and span.start < s.end for i, span in locs for s in own.get(i, ()))


def _located(reading: Reading, sentence: Segment) -> list[tuple[int, Span]]:
    core = redaction_span(reading.text, sentence)
    return [(loc.index, Span(loc.start, loc.end, "crest")) for loc in reading.locate(core.start, core.end)]


def with_view_rules(
    policy: Policy, direction: Direction, text: str, view: Normalized, verdict: Verdict
) -> Verdict:
    """``verdict`` plus the rules that match the normalized view (an API key with a zero-width space in
    it is still the key), their spans mapped back to the original characters."""
    if view.text == text or not policy.rules:
        return verdict
    matches = match_rules(policy, direction, view.text)
    if not matches:
        return verdict
    action = Action.strictest(verdict.action, *(m.action for m in matches))
    redacting = [m for m in matches if m.action is Action.REDACT]
    mapped = [Span(*view.to_original(m.span.start, m.span.end), m.rule) for m in redacting]
    spans = merge_spans([*verdict.spans, *mapped], len(text)) if action is Action.REDACT else verdict.spans
    rules = tuple(sorted({*verdict.rules, *(m.rule for m in matches)}))
    return dataclasses.replace(verdict, action=action, rules=rules, spans=spans)

"""PURE: what the classifier is asked to read for a set of texts (each reading, and its normalized view).

A reading (``readings``) is looked at as written and, when normalizing it shows the classifier
something new (``normalize.needs_second_look``), in its normalized view too: a reading is unsafe if
either look is. Identical strings are classified once.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from crest_proxy.screening.normalize import Normalized, needs_second_look, normalize
from crest_proxy.screening.readings import Reading, readings
from crest_proxy.types import Score


@dataclass(frozen=True)
class Looks:
    """The distinct strings to classify, and which of them each reading is made of."""

    strings: tuple[str, ...]
    per_item: tuple[tuple[int, ...], ...]  # for each item (reading or sentence): indexes into ``strings``

    def item_scores(self, scores: Sequence[Score]) -> list[float]:
        """Each item's P(unsafe): the highest over its looks."""
        return [max(scores[k].score for k in looks) for looks in self.per_item]

    def item_windows(self, scores: Sequence[Score]) -> list[int]:
        """Classifier windows each item's looks took (a string shared by two items counts for the first)."""
        seen: set[int] = set()
        out = []
        for looks in self.per_item:
            out.append(sum(scores[k].windows for k in looks if k not in seen))
            seen.update(looks)
        return out


@dataclass(frozen=True)
class Plan:
    """The readings of a set of texts, their normalized views and the looks that classify them."""

    readings: tuple[Reading, ...]
    views: tuple[Normalized, ...]
    looks: Looks


def plan(texts: Sequence[str], groups: Sequence[Hashable] | None = None) -> Plan:
    """Every reading of ``texts`` (each alone, then the junctions) and what to classify for them."""
    found = tuple(readings(texts, groups))
    views = tuple(normalize(r.text) for r in found)
    return Plan(found, views, looks_for([r.text for r in found], views))


def looks_for(texts: Sequence[str], views: Sequence[Normalized] | None = None) -> Looks:
    """The looks for ``texts``: each as written, plus its normalized view where that shows more."""
    index: dict[str, int] = {}
    per_item = []
    for k, text in enumerate(texts):
        view = views[k] if views is not None else normalize(text)
        candidates = [text, view.text] if needs_second_look(text, view) else [text]
        per_item.append(tuple(index.setdefault(s, len(index)) for s in candidates))
    return Looks(tuple(index), tuple(per_item))

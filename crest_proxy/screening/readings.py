"""PURE: the strings the classifier reads for a set of texts, each with a map back to the texts.

A model does not read the texts of a request one by one: it reads the parts of a message joined, and
each message after the one before it. An attacker who splits a word ("kab" + "oom") or a sentence across
two parts or two messages hides it from a classifier that looks at each text alone (issue 13). So
besides each text alone (``own``), the guard reads every *junction*: the tail of what came before (cut
at a word boundary, like stream context) followed by the head of the next text. A junction is read with a
separator (a space between parts, a newline between messages) and, when it falls inside a word, also
glued, so that a word split across parts is seen whole. Only the texts after the junction are *blamed*
for a junction that is unsafe as a whole but in no sentence alone.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from crest_proxy.screening.scan import INVISIBLE, is_selector
from crest_proxy.screening.segment import word_start

# How much text on each side of a junction is read with it: stream context's default (policy
# ``outbound.stream.context_chars``), so a junction costs at most one short classifier window.
JUNCTION_CHARS = 200
# Every text after a junction is read at least this far, however much came before it in the same reading.
_MIN_HEAD = 50
_PART_SEPARATOR = " "
# A line break ends a sentence for the segmenter; the space after it keeps the next word a word for
# tokenizers that glue a newline to it (the generated test models' Metaspace splits on spaces only).
_MESSAGE_SEPARATOR = "\n "


@dataclass(frozen=True)
class Piece:
    """``length`` characters of a reading, from offset ``at``, are text ``index`` from offset ``start``."""

    at: int
    index: int
    start: int
    length: int


@dataclass(frozen=True)
class Located:
    """A character range ``[start, end)`` of screened text ``index``."""

    index: int
    start: int
    end: int


@dataclass(frozen=True)
class Reading:
    """One string the classifier reads, where its characters come from, and which texts it decides on."""

    text: str
    pieces: tuple[Piece, ...]
    blame: tuple[int, ...]

    def locate(self, start: int, end: int) -> list[Located]:
        """The ranges of the screened texts that reading range ``[start, end)`` covers."""
        found = []
        for p in self.pieces:
            a, b = max(start, p.at), min(end, p.at + p.length)
            if a < b:
                found.append(Located(p.index, p.start + a - p.at, p.start + b - p.at))
        return found


def readings(texts: Sequence[str], groups: Sequence[Hashable] | None = None) -> list[Reading]:
    """Each text alone, then the junctions between consecutive texts (see the module docstring).

    ``groups`` gives each text's message (texts of one message share a key; None: a message of its own).
    Short texts share one junction reading: after the tail before text ``i`` come texts ``i``, ``i+1`` …
    while they fit in ``JUNCTION_CHARS``, so a chat of short messages costs a few readings, not one per
    message.
    """
    own = [Reading(t, (Piece(0, i, 0, len(t)),), (i,)) for i, t in enumerate(texts)]
    if groups is None:
        groups = [None] * len(texts)
    out = list(own)
    i = 1
    while i < len(texts):
        tail = _tail(texts, i)
        if not tail:  # only empty texts so far: the run starts later ("" + "ka" + "boom" is still read)
            i += 1
            continue
        heads = _heads(texts, i)
        out += _junction(texts, groups, tail, heads)
        i = heads[-1].index + 1 if heads else i + 1
    return out


def _heads(texts: Sequence[str], i: int) -> list[Piece]:
    """Texts ``i``, ``i+1`` … read after a junction: whole while they fit, the last one cut at a word."""
    heads: list[Piece] = []
    used = 0
    for j in range(i, len(texts)):
        end = _head_end(texts[j], JUNCTION_CHARS - used)
        heads.append(Piece(0, j, 0, end))
        used += end
        if end < len(texts[j]) or used >= JUNCTION_CHARS:
            break
    return heads


def _junction(
    texts: Sequence[str], groups: Sequence[Hashable], tail: list[Piece], heads: list[Piece]
) -> list[Reading]:
    """The readings of a run of junctions: separated, and glued when one of them splits a word."""
    heads = [h for h in heads if h.length]
    if not tail or not heads:
        return []
    pieces, blame = [*tail, *heads], tuple(h.index for h in heads)
    readings = [_joined(texts, groups, pieces, blame, glue=False)]
    if any(_glues(texts[a.index], texts[b.index]) for a, b in zip(pieces, pieces[1:], strict=False)):
        readings.append(_joined(texts, groups, pieces, blame, glue=True))
    return readings


def _tail(texts: Sequence[str], i: int) -> list[Piece]:
    """Up to ``JUNCTION_CHARS`` of the texts before ``i`` (most recent last), cut at a word boundary."""
    pieces: list[Piece] = []
    need = JUNCTION_CHARS
    for j in range(i - 1, -1, -1):
        text = texts[j]
        if not text:
            continue
        start = word_start(text, max(0, len(text) - need))
        pieces.insert(0, Piece(0, j, start, len(text) - start))
        need -= len(text) - start
        if need <= 0 or start > 0:
            break
    return pieces


def _head_end(text: str, budget: int) -> int:
    """Where the head of ``text`` read at a junction ends: all of it, or a word boundary near ``budget``."""
    budget = max(budget, _MIN_HEAD)
    if len(text) <= budget:
        return len(text)
    return word_start(text, budget) or budget


def _glues(before: str, after: str) -> bool:
    """True when ``before`` + ``after`` written with nothing between them runs one word into another.

    Invisible characters at the junction do not separate words ("kab\u200b" + "oom" reads "kaboom").
    """
    last = next((ch for ch in reversed(before) if not _unseen(ch)), "")
    first = next((ch for ch in after if not _unseen(ch)), "")
    return _wordlike(last) and _wordlike(first)


def _unseen(ch: str) -> bool:
    return unicodedata.category(ch) == "Cf" or ch in INVISIBLE or is_selector(ch)


def _wordlike(ch: str) -> bool:
    return bool(ch) and (ch.isalnum() or unicodedata.category(ch) in ("Mn", "Mc", "Me"))


def _joined(
    texts: Sequence[str],
    groups: Sequence[Hashable],
    pieces: list[Piece],
    blame: tuple[int, ...],
    *,
    glue: bool,
) -> Reading:
    """``pieces`` written one after another: parts of a message with a space, messages with a newline,
    or (``glue``) with nothing wherever that runs one word into the next."""
    parts: list[str] = []
    placed: list[Piece] = []
    at = 0
    for k, piece in enumerate(pieces):
        text = texts[piece.index][piece.start : piece.start + piece.length]
        if k:
            before = pieces[k - 1].index
            parts.append(_separator(texts, groups, before, piece.index, glue=glue))
            at += len(parts[-1])
        parts.append(text)
        placed.append(Piece(at, piece.index, piece.start, piece.length))
        at += piece.length
    return Reading("".join(parts), tuple(placed), blame)


def _separator(texts: Sequence[str], groups: Sequence[Hashable], a: int, b: int, *, glue: bool) -> str:
    if glue and _glues(texts[a], texts[b]):
        return ""
    same = groups[a] is not None and groups[a] == groups[b]
    return _PART_SEPARATOR if same else _MESSAGE_SEPARATOR

"""PURE: the normalized view of a text, as a reader sees it, with a map back to the original characters.

Attackers hide a word from a classifier by writing it differently without changing what a reader (or
the model) takes it for: invisible characters inside it (zero-width space/joiner/non-joiner, word joiner,
soft hyphen, BOM, bidi controls, tag characters, variation selectors), compatibility forms (fullwidth,
mathematical alphanumerics, circled letters), stray combining marks, and letters of another script that
look Latin (Cyrillic ``а``, Greek ``Κ``). ``normalize`` undoes each of these (issue 13):

* NFKC, per grapheme cluster, so every character of the view knows which original characters it came from;
* invisible and format characters are dropped (a joiner or selector inside an emoji sequence is kept:
  it hides nothing and emoji are common);
* combining marks on Latin, Greek and Cyrillic letters are dropped in words that show obfuscation: a mark
  that composes with nothing, three or more marks on one letter, or marks on more than half the letters
  of a word of four or more; ordinary accents ("café", "nước", "мой") are spelling and stay;
* letters that look Latin are folded with the TS #39 table (``lookalikes``): everywhere in a text that is
  mostly Latin (or could all be), and otherwise inside words that also hold ASCII letters (so Russian
  prose is left alone);
* markup escapes are read as what they stand for: HTML character references (``&#107;``, ``&#x6b;``,
  ``&amp;``) and percent-encoded UTF-8 (``%6B``), each decoded character mapped to its whole escape;
* hidden readings are appended after a line break: text written with tag characters (ASCII smuggling)
  decoded, text under a right-to-left override in the order it is displayed, and runs of base64 that
  decode to readable text (``encoded``), themselves normalized (one level: base64 inside is not decoded).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from crest_proxy.screening.encoded import Encoded, base64_texts
from crest_proxy.screening.lookalikes import latin_lookalikes
from crest_proxy.screening.scan import ESCAPE, SCRIPTS_FOLDED, Work, is_invisible, patterns, scan, script

_OVERRIDE_RTL, _POP = "\u202e", "\u202c"
_TAG = re.compile("[\U000e0020-\U000e007e]")
# Before each hidden reading: a line break, and a space for tokenizers that glue a newline to a word.
_READING_SEPARATOR = "\n "


@dataclass(frozen=True)
class Normalized:
    """A normalized view: its character ``k`` came from ``original[starts[k]:ends[k]]``."""

    text: str
    starts: Sequence[int]
    ends: Sequence[int]

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The original character range that view range ``[start, end)`` was made from."""
        if end <= start:
            return (self.starts[start], self.starts[start]) if start < len(self.starts) else (0, 0)
        return min(self.starts[start:end]), max(self.ends[start:end])


def normalize(text: str, *, decode: bool = True) -> Normalized:
    """The normalized view of ``text`` (see the module docstring), with its map to ``text``.

    ``decode=False`` leaves base64 runs alone (the view of a decoded run is not decoded again).
    """
    work = scan(text)
    encoded = base64_texts(text) if decode else []
    if work is Work.PLAIN and not encoded:
        return Normalized(text, range(len(text)), range(1, len(text) + 1))
    if work is Work.COMPATIBILITY and not encoded:
        return _compatibility_view(text)
    pieces = list(_clusters(text))
    _fold_marks(pieces)
    _fold_lookalikes(pieces)
    pieces += _hidden_readings(text)
    for run in encoded:
        pieces += _decoded_reading(run)
    return _assemble(pieces)


def prepare() -> None:
    """Build the character tables now (about half a second) rather than on the first non-ASCII text."""
    normalize("\u0436")


def needs_second_look(text: str, view: Normalized) -> bool:
    """True when the view shows the classifier something the text itself did not.

    CREST's tokenizer applies NFKC itself (XLM-R's sentencepiece ``nmt_nfkc``; the generated test models
    too), so a view that differs from the text only by NFKC (fullwidth CJK punctuation, ``…``) was already
    seen: classifying it again would double the cost of most CJK texts for nothing.
    """
    return view.text != text and view.text != unicodedata.normalize("NFKC", text)


def _compatibility_view(text: str) -> Normalized:
    """NFKC character by character, so that each character of the view knows where it came from."""
    parts = [unicodedata.normalize("NFKC", ch) for ch in text]
    starts = [i for i, part in enumerate(parts) for _ in part]
    return Normalized("".join(parts), starts, [i + 1 for i in starts])


@dataclass(slots=True)
class _Piece:
    """A normalized grapheme cluster and the original range it came from (mutable while folding)."""

    text: str
    start: int
    end: int
    marks: int = 0  # combining marks it carried after NFC
    stray: bool = False  # a mark that composed with nothing


def _clusters(text: str) -> Iterator[_Piece]:
    """Grapheme-ish clusters of ``text`` (a base and its marks), NFKC'd; invisible ones are dropped."""
    shared = patterns()
    pending: _Piece | None = None
    for start, end, cluster, escaped in _units(text):
        invisible = cluster in shared.hidden_chars and (
            is_invisible(cluster, 0) if escaped else is_invisible(text, start)
        )
        if invisible:
            if pending is not None:
                pending.end = end  # a dropped character belongs to the cluster before it
            continue
        if pending is not None:
            yield pending
        # Dropped characters before the first kept cluster belong to it.
        pending = _piece(cluster, 0 if pending is None else start, end)
    if pending is not None:
        yield pending


_Unit = tuple[int, int, str, bool]  # start, end, characters, whether they were decoded from an escape


def _units(text: str) -> Iterator[_Unit]:
    """The clusters of ``text``, each markup escape replaced by the character(s) it stands for."""
    cluster = patterns().cluster
    done = 0
    for escape in ESCAPE.finditer(text):
        decoded = _decoded(escape)
        if decoded is None:
            continue  # not an escape after all (an unknown entity name, bytes that are not UTF-8)
        for match in cluster.finditer(text, done, escape.start()):
            yield match.start(), match.end(), match.group(), False
        yield from decoded
        done = escape.end()
    for match in cluster.finditer(text, done):
        yield match.start(), match.end(), match.group(), False


def _decoded(escape: re.Match[str]) -> list[_Unit] | None:
    """What an escape stands for: one unit per decoded character, spanning the bytes that encoded it."""
    raw, start = escape.group(), escape.start()
    if raw[0] == "&":
        chars = html.unescape(raw)  # HTML5's rules: out-of-range numbers become U+FFFD, 0x80-0x9F cp1252
        return None if chars == raw else [(start, escape.end(), chars, True)]
    try:
        chars = bytes.fromhex(raw.replace("%", "")).decode("utf-8")
    except UnicodeDecodeError:
        return None
    units: list[_Unit] = []
    for ch in chars:
        width = 3 * len(ch.encode("utf-8", "surrogatepass"))  # "%XX" per byte
        units.append((start, start + width, ch, True))
        start += width
    return units


def _piece(cluster: str, start: int, end: int) -> _Piece:
    if len(cluster) == 1 and unicodedata.is_normalized("NFKD", cluster):
        return _Piece(cluster, start, end)  # most characters: nothing to compose, count or fold
    composed = unicodedata.normalize("NFC", cluster)
    stray = any(unicodedata.combining(ch) for ch in composed)
    marks = sum(1 for ch in unicodedata.normalize("NFD", cluster) if unicodedata.combining(ch))
    return _Piece(unicodedata.normalize("NFKC", cluster), start, end, marks, stray)


def _words(pieces: list[_Piece]) -> Iterator[list[_Piece]]:
    """Runs of pieces that are letters (or read as letters)."""
    word: list[_Piece] = []
    table = latin_lookalikes()
    for piece in pieces:
        if piece.text and (piece.text[0].isalpha() or piece.text in table):
            word.append(piece)
            continue
        if word:
            yield word
        word = []
    if word:
        yield word


def _fold_marks(pieces: list[_Piece]) -> None:
    """Drop the combining marks of Latin/Greek/Cyrillic words that show mark obfuscation."""
    for word in _words(pieces):
        marked = [p for p in word if p.marks and script(p.text[0]) in SCRIPTS_FOLDED]
        if not marked:
            continue
        heavy = any(p.stray or p.marks >= 3 for p in marked)
        if heavy or (len(word) >= 4 and 2 * len(marked) > len(word)):
            for piece in marked:
                piece.text = _without_marks(piece.text)


def _without_marks(text: str) -> str:
    bare = "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", bare)


def _fold_lookalikes(pieces: list[_Piece]) -> None:
    """Replace letters that look Latin: all of them in a text that reads as Latin, else inside Latin words."""
    table = latin_lookalikes()
    if all(p.text not in table for p in pieces):
        return
    words = list(_words(pieces))
    letters = sum(len(w) for w in words)
    latin = sum(1 for w in words for p in w if p.text.isascii())
    lookalike = sum(1 for w in words for p in w if not p.text.isascii() and p.text in table)
    # A text all of whose letters could be Latin ("ΚΑΒΟΟΜ") is read as Latin; real Greek or Russian
    # prose always has letters that look like nothing Latin (λ, и, ж …).
    everywhere = 2 * latin >= letters or latin + lookalike == letters
    for word in words:
        if everywhere or any(p.text.isascii() for p in word):
            for piece in word:
                piece.text = "".join(table.get(ch, ch) for ch in piece.text)


def _hidden_readings(text: str) -> list[_Piece]:
    """Tag-character text decoded, and right-to-left overridden text in display order, after a newline."""
    readings: list[list[_Piece]] = [_tag_text(text), _overridden_text(text)]
    out: list[_Piece] = []
    for reading in readings:
        if reading:
            out += [_Piece(_READING_SEPARATOR, reading[0].start, reading[0].start), *reading]
    return out


def _decoded_reading(run: Encoded) -> list[_Piece]:
    """A decoded base64 run's own normalized view after a line break, each character mapped to the run."""
    view = normalize(run.text, decode=False)
    spans = run.spans
    start0 = spans[0][0]
    out = [_Piece(_READING_SEPARATOR, start0, start0)]
    for ch, first, after in zip(view.text, view.starts, view.ends, strict=True):
        if after <= first:  # a separator of the decoded text's own hidden readings: it spans nothing
            at = spans[min(first, len(spans) - 1)][0]
            out.append(_Piece(ch, at, at))
        else:
            out.append(_Piece(ch, spans[first][0], spans[after - 1][1]))
    return out


def _tag_text(text: str) -> list[_Piece]:
    # Tag characters U+E0020..E007E mirror ASCII; models that decode them read hidden instructions.
    if not _TAG.search(text):
        return []
    return [
        _Piece(chr(ord(ch) - 0xE0000), i, i + 1) for i, ch in enumerate(text) if 0xE0020 <= ord(ch) <= 0xE007E
    ]


def _overridden_text(text: str) -> list[_Piece]:
    """Characters under U+202E (until U+202C or a line end), reversed as they are displayed."""
    if _OVERRIDE_RTL not in text:
        return []
    out: list[_Piece] = []
    run: list[_Piece] = []
    inside = False
    for i, ch in enumerate(text):
        if ch == _OVERRIDE_RTL:
            inside = True
        elif inside and (ch == _POP or ch in "\n\r\u2029"):
            out += reversed(run)
            run, inside = [], False
        elif inside and not is_invisible(text, i):
            run.append(_Piece(ch, i, i + 1))
    return out + list(reversed(run))


def _assemble(pieces: list[_Piece]) -> Normalized:
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for piece in pieces:
        for ch in piece.text:
            chars.append(ch)
            starts.append(piece.start)
            ends.append(piece.end)
    return Normalized("".join(chars), starts, ends)

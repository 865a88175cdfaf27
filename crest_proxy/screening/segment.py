"""Multilingual sentence segmentation: contiguous character offsets for redaction and stream windows.

Pure and stdlib-only. Two entry points:

* ``segment`` splits a whole text into sentences that cover it exactly (no byte lost or added), cutting
  over-long sentences at spaces, or anywhere grapheme-safe when a script writes no spaces.
* ``complete_prefix`` tells a streaming reader how much of a growing text is made of finished sentences,
  so that it can hold back only the unfinished tail.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

# Terminators that end a sentence only when whitespace (or CJK text) follows: "3.14", "e.g" or a URL
# mid-stream must not split. Arabic also uses '.', so it is covered here too; the Greek question mark
# (U+037E) and the Armenian question and exclamation marks (written over a word's last vowel) too.
_SPACED_TERMINATORS = ".!?…‼⁇⁈⁉\u037e\u055e\u055c"
# Terminators that end a sentence at once: CJK (full and halfwidth), Devanagari/Bengali danda, Arabic and
# Urdu, Armenian, Ethiopic (full stop, question mark), Myanmar, Khmer, Tibetan shad. Those scripts put no
# space after them.
_IMMEDIATE_TERMINATORS = "。！？｡．।॥؟۔։።፧။។៕།༎"
# Thai, Lao and Khmer write no full stop: a space between two of their letters ends a clause.
_CLAUSE_SPACED = "\u0e00-\u0eff\u1780-\u17ff"
# Scripts written without spaces: an ASCII terminator followed directly by one ends a sentence ("好.你").
_CJK = re.compile("[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
# Markdown that opens a line and stays outside a redacted span: quote marks, a heading, a list bullet.
_LINE_PREFIX = re.compile(r"[ \t]*(?:>[ \t]?)*[ \t]*(?:#{1,6}[ \t]+|[-*+•][ \t]+|\d{1,9}[.)][ \t]+)?")
_LINE_BREAKS = "\n\r\u2028\u2029\x85"
# How far a context cut may move to reach a word boundary (longer than nearly every real word).
WORD_REACH = 64
# NFC turns the Greek question mark into ';', so after a Greek letter ';' ends a question too.
_GREEK = "\u0370-\u03ff\u1f00-\u1fff"
# "1. " opening a line numbers a list item: it ends no sentence.
_LIST_NUMBER = re.compile(r"(?:^|[\n\r])[ \t>]*\d{1,9}$")
# Closing quotes and brackets that stay with the sentence they close: `He said "no."` ends after `"`.
_CLOSERS = "\"'”’»›)]}」』）】〉》〕〗〙〛］｝"

# One sentence end: a run of terminators, its closers and the whitespace after it (which belongs to the
# sentence it ends), or a line break. Chat text is full of markdown lists and headings without full stops,
# so every line break ends a segment.
_BOUNDARY = re.compile(
    rf"(?P<term>[{re.escape(_SPACED_TERMINATORS + _IMMEDIATE_TERMINATORS)}]+|(?<=[{_GREEK}]);)"
    rf"[{re.escape(_CLOSERS)}]*(?P<ws>\s*)"
    r"|(?:\r\n|[\n\r\u2028\u2029\x85])\s*"
    rf"|(?<=[{_CLAUSE_SPACED}])[ \u00a0]+(?=[{_CLAUSE_SPACED}])"
)
# The word before a lone '.', to skip abbreviations ("Dr. Smith", "e.g. this").
_WORD_BEFORE = re.compile(r"(?<![\w.])([A-Za-z][A-Za-z.]{0,5})$")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "approx"}
)

# Emoji skin-tone modifiers and zero-width joiners glue graphemes together like combining marks do.
_ZWJ = "\u200d"
_EMOJI_MODIFIERS = range(0x1F3FB, 0x1F400)


@dataclass(frozen=True)
class Segment:
    """A half-open character range ``[start, end)`` of a segmented text."""

    start: int
    end: int


def segment(text: str, *, max_chars: int = 400) -> list[Segment]:
    """Split ``text`` into sentences of at most ``max_chars`` characters that cover it exactly."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    segments: list[Segment] = []
    start = 0
    for end in _sentence_ends(text, final=True):
        segments.extend(_split_long(text, start, end, max_chars))
        start = end
    return segments


def redaction_span(text: str, sentence: Segment) -> Segment:
    """The part of ``sentence`` a redaction replaces: no surrounding whitespace, and no markdown list
    bullet, heading mark or quote mark when the sentence opens a line (issue 13: exact redaction)."""
    start, end = sentence.start, sentence.end
    line = start
    while line > 0 and text[line - 1] in " \t":
        line -= 1
    if line == 0 or text[line - 1] in _LINE_BREAKS:
        prefix = _LINE_PREFIX.match(text, start, end)
        start = prefix.end() if prefix else start
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Segment(start, end)


def word_start(text: str, start: int, *, reach: int = WORD_REACH) -> int:
    """A cut at or before ``start`` that splits no word (a tail from it never turns "skill" into "kill").

    Looks back up to ``reach`` characters for a word boundary, then forward; in a script written without
    spaces, any grapheme-safe cut between two CJK characters will do.
    """
    if start <= 0 or start >= len(text) or not _inside_word(text, start):
        return max(0, min(start, len(text)))
    for pos in range(start - 1, max(0, start - reach) - 1, -1):
        if not _inside_word(text, pos):
            return pos
    for pos in range(start + 1, min(len(text), start + reach) + 1):
        if pos == len(text) or not _inside_word(text, pos):
            return pos
    return len(text)  # one unbroken word longer than the reach: no context rather than half a word


def _inside_word(text: str, pos: int) -> bool:
    """True when a cut at ``pos`` would split a word (or a grapheme)."""
    if pos <= 0 or pos >= len(text):
        return False
    before, after = text[pos - 1], text[pos]
    if not _is_safe_cut(text, pos, streaming=False):
        return True
    if _CJK.match(before) and _CJK.match(after):
        return False
    return _wordlike(before) and _wordlike(after)


def _wordlike(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch) in ("Mn", "Mc", "Me", "Cf", "Pc")


def complete_prefix(text: str, *, max_chars: int) -> int:
    """Length of the longest prefix of a growing ``text`` made of complete sentences (0 when none).

    When no sentence is complete but ``text`` already holds ``max_chars`` characters, the hold-back is
    forced to end: the cut goes after the last whitespace within ``max_chars``, else at a grapheme-safe
    position near ``max_chars``. A complete prefix may be longer than ``max_chars``.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    last = 0
    for end in _sentence_ends(text, final=False):
        last = end
    if last or len(text) < max_chars:
        return last
    return _soft_cut(text, 0, max_chars, streaming=True)


def _sentence_ends(text: str, *, final: bool) -> Iterator[int]:
    """Offsets just after each sentence end, ascending; with ``final`` the text's end is always one."""
    last = 0
    for match in _BOUNDARY.finditer(text):
        end = _boundary_end(text, match, final=final)
        if end > last:
            last = end
            yield end
    if final and last < len(text):
        yield len(text)


def _boundary_end(text: str, match: re.Match[str], *, final: bool) -> int:
    """Where the sentence ending at ``match`` stops, or 0 when ``match`` does not end a sentence."""
    end = match.end()
    term = match.group("term")
    if term is not None and not _ends_sentence(text, match, final=final):
        return 0
    if not final and end == len(text) and text.endswith("\r"):
        end -= 1  # a '\n' may be on its way: never split a CRLF across two stream windows
    return end


def _ends_sentence(text: str, match: re.Match[str], *, final: bool) -> bool:
    """True when a terminator run really ends a sentence (not a decimal point or an abbreviation)."""
    term = match.group("term")
    if any(ch in _IMMEDIATE_TERMINATORS for ch in term):
        return True
    if not match.group("ws"):
        if match.end() < len(text):
            return _CJK.match(text, match.end()) is not None
        return final
    if term == ".":
        if _LIST_NUMBER.search(text, max(0, match.start() - 16), match.start()):
            return False
        word = _WORD_BEFORE.search(text, max(0, match.start() - 8), match.start())
        return not (word and word.group(1).lower() in _ABBREVIATIONS)
    return True


def _split_long(text: str, start: int, end: int, max_chars: int) -> Iterator[Segment]:
    """Cut ``text[start:end]`` into pieces of at most ``max_chars``, preferring whitespace."""
    while end - start > max_chars:
        cut = _soft_cut(text, start, start + max_chars, streaming=False)
        yield Segment(start, cut)
        start = cut
    if end > start:
        yield Segment(start, end)


def _soft_cut(text: str, start: int, limit: int, *, streaming: bool) -> int:
    """The cut in ``(start, limit]`` just after the last whitespace, else a grapheme-safe hard cut."""
    for pos in range(limit, start, -1):
        if text[pos - 1].isspace() and _is_safe_cut(text, pos, streaming=streaming):
            return pos
    return _hard_cut(text, start, limit, streaming=streaming)


def _hard_cut(text: str, start: int, limit: int, *, streaming: bool) -> int:
    """The last grapheme-safe cut in ``(start, limit]``.

    A segment must never exceed its limit, so when no safe cut exists there (hundreds of combining marks
    in a row) ``segment`` cuts at ``limit`` anyway; a stream instead waits for a safe cut further on.
    """
    for pos in range(limit, start, -1):
        if _is_safe_cut(text, pos, streaming=streaming):
            return pos
    if streaming:
        for pos in range(limit + 1, len(text)):
            if _is_safe_cut(text, pos, streaming=True):
                return pos
    return limit


def _is_safe_cut(text: str, pos: int, *, streaming: bool) -> bool:
    """True when cutting ``text`` at ``pos`` keeps every grapheme and CRLF whole."""
    if pos >= len(text):
        # At the end of a growing text the next character is unknown, so the end is never a forced cut.
        return not streaming
    before, after = text[pos - 1], text[pos]
    if before == "\r" and after == "\n":
        return False
    if before == _ZWJ or _is_extender(after):
        return False
    return not ("\ud800" <= before <= "\udbff" and "\udc00" <= after <= "\udfff")


def _is_extender(ch: str) -> bool:
    """True for characters that attach to the one before them (marks, ZWJ, variation selectors)."""
    return ch == _ZWJ or unicodedata.category(ch) in ("Mn", "Mc", "Me") or ord(ch) in _EMOJI_MODIFIERS

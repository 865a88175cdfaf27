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

# Terminators that end a sentence only when whitespace follows: "3.14", "e.g" or a URL mid-stream must
# not split. Arabic also uses '.', so it is covered here too.
_SPACED_TERMINATORS = ".!?…‼⁇⁈⁉"
# Terminators that end a sentence at once: CJK (full and halfwidth), Devanagari/Bengali danda, Arabic and
# Urdu, Armenian, Ethiopic, Myanmar, Khmer. Those scripts put no space after them.
_IMMEDIATE_TERMINATORS = "。！？｡．।॥؟۔։።။។៕"
# Closing quotes and brackets that stay with the sentence they close: `He said "no."` ends after `"`.
_CLOSERS = "\"'”’»›)]}」』）】〉》〕〗〙〛］｝"

# One sentence end: a run of terminators, its closers and the whitespace after it (which belongs to the
# sentence it ends), or a line break. Chat text is full of markdown lists and headings without full stops,
# so every line break ends a segment.
_BOUNDARY = re.compile(
    rf"(?P<term>[{re.escape(_SPACED_TERMINATORS + _IMMEDIATE_TERMINATORS)}]+)"
    rf"[{re.escape(_CLOSERS)}]*(?P<ws>\s*)"
    r"|(?:\r\n|[\n\r\u2028\u2029\x85])\s*"
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
        return final and match.end() == len(text)
    if term == ".":
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

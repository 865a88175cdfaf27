"""PURE: a quick scan that tells ``normalize`` how much work a text needs (most texts need none).

Normalizing character by character costs microseconds per character in Python; nearly all traffic is
plain text in which nothing would change. The scan answers with set and regex tests over the whole
string (C speed) and looks at single characters only where one of them matched:

* ``PLAIN``: nothing to fold: the text is its own view;
* ``COMPATIBILITY``: only NFKC changes it (fullwidth CJK punctuation, ligatures): a per-character NFKC;
* ``SUSPECT``: invisible or format characters, lookalike letters that could be read as Latin, stray or
  piled-up combining marks, markup escapes (HTML character references, percent-encoded bytes): the full
  normalization.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from enum import Enum

from crest_proxy.screening.lookalikes import latin_lookalikes

# Not format characters (Cf) but invisible all the same: combining grapheme joiner, Hangul fillers,
# braille blank, Khmer inherent vowels, Mongolian vowel separator.
INVISIBLE = frozenset("\u034f\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\u180e")
SCRIPTS_FOLDED = ("LATIN", "GREEK", "CYRILLIC")
_ZWJ = "\u200d"
_JOINERS = "\u200c\u200d"
_WORD = re.compile(r"\w+")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
# Escapes a model decodes as it reads (``&#107;``, ``&#x6b;``, ``&amp;``, ``%6B``): HTML character references
# (the ``;`` of a numeric one is optional in HTML too) and runs of percent-encoded bytes.
ESCAPE = re.compile(
    r"&#[xX][0-9a-fA-F]{1,6};?|&#[0-9]{1,7};?|&[A-Za-z][A-Za-z0-9]{1,31};|(?:%[0-9A-Fa-f]{2})+"
)


class Work(Enum):
    """How much normalizing a text needs."""

    PLAIN = "plain"
    COMPATIBILITY = "compatibility"
    SUSPECT = "suspect"


def scan(text: str) -> Work:
    """How much work normalizing ``text`` takes (see the module docstring)."""
    if ("&" in text or "%" in text) and ESCAPE.search(text):
        return Work.SUSPECT
    if text.isascii():
        return Work.PLAIN
    if _hidden(text) or _lookalikes(text) or _patterns().stray.search(text) or heavily_marked(text):
        return Work.SUSPECT
    return Work.PLAIN if unicodedata.is_normalized("NFKC", text) else Work.COMPATIBILITY


def script(ch: str) -> str:
    """The script a character's Unicode name starts with (``LATIN``, ``CYRILLIC`` …; ``""`` if unnamed)."""
    return unicodedata.name(ch, "").split(" ", 1)[0]


def is_selector(ch: str) -> bool:
    """True for a variation selector."""
    return "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef"


def is_invisible(text: str, pos: int) -> bool:
    """True when ``text[pos]`` is a character a reader does not see (and normalizing drops).

    Kept: a joiner or selector inside an emoji sequence, and a zero-width (non-)joiner between two
    letters of a script whose spelling uses it (Persian, Indic …): dropping those hides nothing and
    would make every such text cost a second look.
    """
    ch = text[pos]
    before = text[pos - 1] if pos else ""
    in_emoji = bool(before) and unicodedata.category(before) in ("So", "Sk")
    if is_selector(ch):
        return not in_emoji
    if ch in _JOINERS and before and pos + 1 < len(text):
        spelling = _joins_script(before) and _joins_script(text[pos + 1])
        return not (spelling or (ch == _ZWJ and in_emoji))
    return unicodedata.category(ch) == "Cf" or ch in INVISIBLE


def heavily_marked(text: str) -> bool:
    """True when a word of four letters or more carries accents on more than half of them ("ḱȧḃöȯṁ")."""
    marked = _marked_letters()
    if marked.isdisjoint(text):
        return False
    return any(
        len(word) >= 4 and 2 * sum(ch in marked for ch in word) > len(word) for word in _WORD.findall(text)
    )


def _joins_script(ch: str) -> bool:
    """True for a letter or mark of a script that writes zero-width (non-)joiners as spelling."""
    letter_or_mark = ch.isalpha() or unicodedata.category(ch) in ("Mn", "Mc")
    return letter_or_mark and not ch.isascii() and script(ch) not in SCRIPTS_FOLDED


def _hidden(text: str) -> bool:
    """True when the text holds a character normalizing would drop."""
    return any(is_invisible(text, m.start()) for m in _patterns().hidden.finditer(text))


def _lookalikes(text: str) -> bool:
    """True when lookalike letters may be read as Latin (the cases ``normalize`` folds, or more).

    That is: in a word with ASCII letters, in a text that is mostly ASCII letters, or in a text all of
    whose letters could be Latin. Russian or Greek prose is full of lookalikes (а, о, ο) but, mentioning
    no English, it is checked with two set tests and a loop that stops at its first non-Latin letter.
    """
    table = latin_lookalikes()
    if table.keys().isdisjoint(text):
        return False
    text = unicodedata.normalize("NFKC", text)
    if all(ch.isascii() or ch in table for ch in text if ch.isalpha()):
        return True
    ascii_letters = len(_ASCII_LETTER.findall(text))
    if not ascii_letters:
        return False
    if 2 * ascii_letters >= sum(1 for ch in text if ch.isalpha()):
        return True
    return any(_ASCII_LETTER.search(w) and not table.keys().isdisjoint(w) for w in _WORD.findall(text))


@functools.cache
def _patterns() -> _Patterns:
    format_chars = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"}
    selectors = {chr(c) for c in [*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]}
    marks = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Mn", "Me", "Mc")}
    folded = {chr(c) for c in range(0x80, 0x2000) if script(chr(c)) in SCRIPTS_FOLDED}
    folded |= {chr(c) for c in range(ord("A"), ord("z") + 1) if chr(c).isalpha()}
    hidden = frozenset(format_chars | selectors | INVISIBLE)
    attaching = _char_class(marks - hidden)
    return _Patterns(
        hidden_chars=hidden,
        hidden=re.compile(f"[{_char_class(hidden)}]"),
        stray=re.compile(f"[{_char_class(folded)}][{attaching}]"),
        cluster=re.compile(f".[{attaching}]*", re.DOTALL),
    )


class _Patterns:
    """The character sets and compiled classes the scan and ``normalize`` use (built once per process)."""

    def __init__(
        self,
        hidden_chars: frozenset[str],
        hidden: re.Pattern[str],
        stray: re.Pattern[str],
        cluster: re.Pattern[str],
    ) -> None:
        self.hidden_chars = hidden_chars  # characters ``is_invisible`` may drop
        self.hidden = hidden
        self.stray = stray  # a combining mark right after a Latin, Greek or Cyrillic character
        self.cluster = cluster  # a character and the combining marks that attach to it


def patterns() -> _Patterns:
    """The shared character sets and classes (``normalize`` cuts grapheme clusters with ``cluster``)."""
    return _patterns()


def _char_class(chars: Iterable[str]) -> str:
    """A regex character class body for ``chars``, as ranges of consecutive code points."""
    codes = sorted(ord(c) for c in chars)
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)


@functools.cache
def _marked_letters() -> frozenset[str]:
    """Precomposed Latin, Greek and Cyrillic letters that carry a combining mark (á, ṁ, ї …)."""
    return frozenset(
        chr(c)
        for c in range(0x80, 0x2000)
        if chr(c).isalpha()
        and script(chr(c)) in SCRIPTS_FOLDED
        and any(unicodedata.combining(m) for m in unicodedata.normalize("NFD", chr(c)))
    )

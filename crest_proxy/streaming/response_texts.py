"""Where text sits in Responses API stream events and output items, read from the endpoint registry.

An output item's texts are the registry's ``responses`` outbound rows (the same ones a non-streamed
answer is screened by); the event families that stream a text as deltas are its ``EVENT_LANES``. A field
with a lane is streamed (held as its deltas arrive); any other (a tool name, an MCP output) arrives whole
in its item and is screened there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from crest_proxy import endpoints
from crest_proxy.endpoints import EventLane, TextField
from crest_proxy.streaming.paths import Path, get_at, set_at
from crest_proxy.types import Direction
from crest_proxy.wire import structured
from crest_proxy.wire.patterns import find, pattern_of

TOOL_LABEL = "tool_arguments"  # the texts the policy's ``tool_calls`` switch covers


@dataclass(frozen=True)
class ItemText:
    """One text of an output item: its lane and sub-index (part position), path in the item, and row."""

    lane: str
    sub: int | None
    path: Path
    row: TextField
    key: bool = False  # a property name of a JSON Schema: replaced by renaming the key

    @property
    def streamed(self) -> bool:
        """An event family streams this text as deltas (so an ``added`` event carries it empty)."""
        return bool(self.row.lane)

    @property
    def json(self) -> bool:
        """JSON-encoded: screened decoded, once whole."""
        return self.row.kind == "json"


@functools.lru_cache(maxsize=4)
def lanes(endpoint: str = "responses") -> dict[str, EventLane]:
    """The event families that stream text, by family name (``response.output_text`` …)."""
    return {lane.family: lane for lane in endpoints.event_lanes(endpoint)}


@functools.lru_cache(maxsize=4)
def _item_rows(endpoint: str) -> tuple[tuple[TextField, str], ...]:
    rows = endpoints.fields(endpoint, Direction.OUTBOUND)
    return tuple((row, row.path.removeprefix("output")) for row in rows if row.path.startswith("output["))


def item_texts(item: dict[str, Any], endpoint: str = "responses") -> list[ItemText]:
    """The screened strings of one output item, in registry order."""
    found = []
    for row, inside in _item_rows(endpoint):
        for match in find([item], inside):
            for path, key in _strings(row, match.value, match.path[1:]):
                sub = next((k for k in path if isinstance(k, int)), None)
                found.append(ItemText(row.lane or pattern_of(path), sub, path, row, key))
    # Property names last, deepest first: renaming one must not move a string still to be replaced.
    return sorted(found, key=lambda t: (t.key, -len(t.path) if t.key else 0))


def _strings(row: TextField, value: Any, path: Path) -> list[tuple[Path, bool]]:
    """The strings a row's value holds: itself, or every prose string of a JSON Schema."""
    if row.kind == "schema":
        return [((*path, *inner), key) for inner, key in structured.schema_strings(value, ())]
    if row.kind == "json" and isinstance(value, dict):  # an object read whole (an item of unknown type)
        return [((*path, *inner), key) for inner, key in structured.object_strings(value)]
    return [(path, False)] if isinstance(value, str) else []


def text_at(item: Any, at: ItemText) -> str:
    """The text of ``at`` in ``item`` (a key's own name for a property name)."""
    return str(at.path[-1]) if at.key else str(get_at(item, at.path))


def put_at(item: Any, at: ItemText, text: str) -> None:
    """Replace the text of ``at`` in ``item`` (renaming the key, in place, for a property name)."""
    if not at.key:
        set_at(item, at.path, text)
        return
    parent = get_at(item, at.path[:-1])
    if text != at.path[-1] and text not in parent:
        items = [(text if k == at.path[-1] else k, v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)


def part_texts(item_type: str, attr: str, part: dict[str, Any]) -> list[ItemText]:
    """The screened strings of one content (``attr``: content) or summary part of an item of ``item_type``:
    its streamed text and what arrives whole in it (citation titles)."""
    texts = item_texts({"type": item_type, attr: [part]})
    return [ItemText(t.lane, t.sub, t.path[2:], t.row, t.key) for t in texts if t.path[:2] == (attr, 0)]


def screens(label: str, *, text: bool, tools: bool) -> bool:
    """Whether the policy screens texts labelled ``label`` (tool calls have their own switch)."""
    return tools if label == TOOL_LABEL else text

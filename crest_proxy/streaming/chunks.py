"""Where text sits in chat and completion chunk choices, and the chunk pieces the proxy writes itself."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from crest_proxy import endpoints
from crest_proxy.endpoints import TextField
from crest_proxy.streaming.paths import Path
from crest_proxy.types import Direction
from crest_proxy.wire.patterns import Match, Step, compile_pattern, find_all

TOOL_LABEL = "tool_arguments"  # the rows the policy's ``tool_calls`` switch covers
MESSAGE_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")

Key = tuple[
    int, str, int | None
]  # a hold-back lane: (choice index, field path in the choice, tool-call index)


@dataclass(frozen=True)
class ChoiceText:
    """One screened string of a choice: its lane, where it sits inside the choice, and its registry row."""

    key: Key
    path: Path
    row: TextField

    @property
    def json(self) -> bool:
        """JSON-encoded (tool-call arguments): held until the call ends, then screened decoded."""
        return self.row.kind == "json"


@functools.lru_cache(maxsize=8)
def stream_rows(endpoint: str) -> tuple[tuple[TextField, str], ...]:
    """The registry's streamed-chunk rows of ``endpoint``, each with its path inside one choice."""
    rows = endpoints.fields(endpoint, Direction.OUTBOUND, stream=True)
    return tuple((row, row.path.removeprefix("choices[*].")) for row in rows)


@functools.lru_cache(maxsize=8)
def _patterns(endpoint: str) -> tuple[str, ...]:
    return tuple(inside for _, inside in stream_rows(endpoint))


@functools.lru_cache(maxsize=8)
def _rows_by_path(endpoint: str) -> dict[str, TextField]:
    return {inside: row for row, inside in stream_rows(endpoint)}


def choice_places(choice: dict[str, Any], endpoint: str) -> dict[str, list[Match]]:
    """Every place of one chunk choice that a streamed row of ``endpoint`` names: one walk for every row."""
    return find_all(choice, _patterns(endpoint))


def choice_texts(
    matches: dict[str, list[Match]], idx: int, *, endpoint: str, text: bool, tools: bool
) -> list[ChoiceText]:
    """The non-empty strings to screen among a choice's ``choice_places`` (``text``: message text,
    ``tools``: tool calls)."""
    rows = _rows_by_path(endpoint)
    found = []
    for inside, places in matches.items():  # walk order: the registry's order of fields
        row = rows[inside]
        if tools if row.label == TOOL_LABEL else text:
            found += [
                ChoiceText((idx, inside, _sub_index(m)), m.path, row) for m in places if _is_text(m.value)
            ]
    return found


def _sub_index(match: Match) -> int | None:
    """Which tool call a match is in: the call's ``index`` (its position when it has none)."""
    if match.item is None:
        return None
    slot = match.item.get("index")
    positions = [k for k in match.path if isinstance(k, int)]
    if isinstance(slot, int) and not isinstance(slot, bool):
        return slot
    return positions[0] if positions else None


def completion_chunk(
    template: dict[str, Any], idx: int, text: str, finish: Any, logprobs: Any
) -> dict[str, Any]:
    """A ``text_completion`` chunk with one choice, carrying the id, created and model of ``template``."""
    keys = ("id", "object", "created", "model", "system_fingerprint")
    chunk: dict[str, Any] = {k: template[k] for k in keys if k in template}
    choice = {"index": idx, "text": text, "logprobs": logprobs, "finish_reason": finish}
    return {**chunk, "choices": [choice]}


def choice_index(choice: dict[str, Any]) -> int:
    """The choice's ``index`` (0 when it is missing or not an integer)."""
    idx = choice.get("index", 0)
    return idx if isinstance(idx, int) and not isinstance(idx, bool) else 0


def chat_delta(parts: list[tuple[Key, str]]) -> dict[str, Any]:
    """A chat delta carrying released texts of several lanes of one choice."""
    delta: dict[str, Any] = {}
    for (_, inside, slot), text in parts:
        _put(delta, compile_pattern(inside.removeprefix("delta.")), slot, text)
    return delta


def _put(node: dict[str, Any], steps: tuple[Step, ...], slot: int | None, text: str) -> None:
    """Add ``text`` at the lane's place in a delta (a tool call is the element with ``index: slot``)."""
    for i, step in enumerate(steps[:-1]):
        if step.each:
            continue
        if steps[i + 1].each:
            calls = node.setdefault(step.key or "", [])
            found = [c for c in calls if c.get("index") == slot]
            node = found[0] if found else _append(calls, slot)
        else:
            node = node.setdefault(step.key or "", {})
    last = steps[-1].key or ""
    node[last] = node.get(last, "") + text


def _append(calls: list[dict[str, Any]], slot: int | None) -> dict[str, Any]:
    calls.append({"index": slot})
    return calls[-1]


def prune(part: dict[str, Any]) -> dict[str, Any] | None:
    """``part`` without the text fields the screener held back; None when nothing is left to send."""
    delta = part.get("delta")
    if isinstance(delta, dict):
        _drop_empty_texts(delta)
    empty = delta == {} if "delta" in part else part.get("text") == ""
    return None if empty and part.get("finish_reason") is None and part.get("logprobs") is None else part


def _drop_empty_texts(delta: dict[str, Any]) -> None:
    for name in MESSAGE_FIELDS:
        if delta.get(name) == "" and name != "content":
            del delta[name]
    if _is_bare(delta.get("function_call")):
        del delta["function_call"]
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        calls[:] = [c for c in calls if not _is_bare_call(c)]
        if not calls:
            del delta["tool_calls"]
    if delta.get("content") == "" and len(delta) == 1:
        del delta["content"]


def _is_bare(part: Any) -> bool:
    """An object whose every field is text the screener held (now empty)."""
    return isinstance(part, dict) and all(value == "" for value in part.values())


def _is_bare_call(call: Any) -> bool:
    """A tool-call delta whose only payload was text the screener held."""
    return (
        isinstance(call, dict)
        and set(call) <= {"index", "function", "custom"}
        and all(_is_bare(call[k]) for k in ("function", "custom") if k in call)
    )


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""

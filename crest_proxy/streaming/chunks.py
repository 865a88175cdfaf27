"""Where text sits in chat and completion chunk choices, and the chunk pieces the proxy writes itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crest_proxy.streaming.paths import Path

Key = tuple[int, str, int | None]  # a hold-back lane: (choice index, field, tool-call index)
MESSAGE_FIELDS = ("content", "refusal", "reasoning_content")


@dataclass(frozen=True)
class ChoiceText:
    """One screened string of a choice: its lane and where it sits inside the choice."""

    key: Key
    path: Path


def choice_texts(
    choice: dict[str, Any], idx: int, *, chat: bool, text: bool, tools: bool
) -> list[ChoiceText]:
    """The non-empty strings of one chunk choice to screen (``text``: message text, ``tools``: arguments)."""
    if not chat:
        return [ChoiceText((idx, "text", None), ("text",))] if text and _is_text(choice.get("text")) else []
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return []
    texts = [
        ChoiceText((idx, name, None), ("delta", name))
        for name in MESSAGE_FIELDS
        if text and _is_text(delta.get(name))
    ]
    return texts + (_tool_texts(delta, idx) if tools else [])


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


def _tool_texts(delta: dict[str, Any], idx: int) -> list[ChoiceText]:
    texts = []
    legacy = delta.get("function_call")
    if isinstance(legacy, dict) and _is_text(legacy.get("arguments")):
        texts.append(ChoiceText((idx, "function_call", None), ("delta", "function_call", "arguments")))
    calls = delta.get("tool_calls")
    for k, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and _is_text(function.get("arguments")):
            slot = call.get("index", k)
            texts.append(
                ChoiceText(
                    (idx, "tool", slot if isinstance(slot, int) else k),
                    ("delta", "tool_calls", k, "function", "arguments"),
                )
            )
    return texts


def chat_delta(parts: list[tuple[Key, str]]) -> dict[str, Any]:
    """A chat delta carrying released texts of several lanes of one choice."""
    delta: dict[str, Any] = {}
    for key, text in parts:
        _, name, slot = key
        if name == "tool":
            delta.setdefault("tool_calls", []).append({"index": slot, "function": {"arguments": text}})
        elif name == "function_call":
            delta["function_call"] = {"arguments": text}
        else:
            delta[name] = delta.get(name, "") + text
    return delta


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
    legacy = delta.get("function_call")
    if isinstance(legacy, dict) and legacy == {"arguments": ""}:
        del delta["function_call"]
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        calls[:] = [c for c in calls if not _is_bare_call(c)]
        if not calls:
            del delta["tool_calls"]
    if delta.get("content") == "" and len(delta) == 1:
        del delta["content"]


def _is_bare_call(call: Any) -> bool:
    """A tool-call delta whose only payload was arguments the screener held."""
    return (
        isinstance(call, dict)
        and set(call) <= {"index", "function"}
        and call.get("function") in ({}, {"arguments": ""})
    )


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""

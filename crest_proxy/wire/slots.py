"""Where the screenable strings of an OpenAI body live (``TextSlot``) and how to put new strings back."""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping, MutableSequence
from dataclasses import dataclass
from typing import Any, Literal

Endpoint = Literal["chat.completions", "completions", "responses", "embeddings"]
ENDPOINTS: tuple[str, ...] = ("chat.completions", "completions", "responses", "embeddings")

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class TextSlot:
    """One string of a request or response body: its JSON path, the text, the speaker's role and its kind.

    ``kind`` is one of: ``content`` (a message's content, whole or one text part), ``refusal``,
    ``tool_arguments`` (tool/function call arguments or custom tool input), ``tool_output`` (Responses
    tool results), ``reasoning`` (reasoning text a model wrote), ``prompt`` (legacy completions),
    ``input`` (Responses string input, embeddings input), ``instructions``, ``text`` (legacy completion
    output) and ``output_text`` (Responses output).
    """

    path: JsonPath
    text: str
    role: str | None
    kind: str


def check_endpoint(endpoint: str) -> None:
    """Raise ValueError for an endpoint name this module does not know."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {', '.join(ENDPOINTS)}")


def choice_index(slot: TextSlot) -> int | None:
    """The position in ``choices`` of a response slot (None outside ``choices``, e.g. Responses API)."""
    path = slot.path
    if len(path) >= 2 and path[0] == "choices" and isinstance(path[1], int):
        return path[1]
    return None


def replace_texts(body: Mapping[str, Any], replacements: Mapping[JsonPath, str]) -> dict[str, Any]:
    """A deep copy of ``body`` with the strings at the given paths replaced; everything else untouched."""
    result = copy.deepcopy(dict(body))
    for path, text in replacements.items():
        _assign(result, path, text)
    return result


def _assign(root: dict[str, Any], path: JsonPath, text: str) -> None:
    if not path:
        raise ValueError("an empty path names the whole body, not a string inside it")
    parent: Any = root
    for key in path[:-1]:
        parent = _child(parent, key, path)
    if not isinstance(_child(parent, path[-1], path), str):
        raise ValueError(f"no string at {path_param(path)}")
    parent[path[-1]] = text


def _child(container: Any, key: str | int, path: JsonPath) -> Any:
    # Keys must match the container's kind exactly: a str never indexes a list, an int never a dict, and
    # negative indexes are refused so that a path names one place only.
    if isinstance(key, str) and isinstance(container, MutableMapping) and key in container:
        return container[key]
    is_list = isinstance(container, MutableSequence) and not isinstance(key, (str, bool))
    if is_list and isinstance(key, int) and 0 <= key < len(container):
        return container[key]
    raise ValueError(f"path {path_param(path)} does not exist in the body")


def path_param(path: JsonPath) -> str:
    """A path written the way OpenAI names a param, e.g. ``messages[2].content[0].text``."""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")

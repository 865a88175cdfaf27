"""Where the screenable strings of an OpenAI body live (``TextSlot``) and how to put new strings back."""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping, MutableSequence
from dataclasses import dataclass, field
from typing import Any

from crest_proxy import endpoints
from crest_proxy.wire import data_url, structured
from crest_proxy.wire.patterns import JsonPath, pattern_of

__all__ = [
    "ENDPOINTS",
    "Endpoint",
    "JsonPath",
    "TextSlot",
    "check_endpoint",
    "choice_index",
    "path_param",
    "replace_texts",
]

# The registry's endpoints (``wire.Endpoint`` is the registry row type; names for the wire helpers).
Endpoint = endpoints.Endpoint
ENDPOINTS: tuple[str, ...] = tuple(e.name for e in endpoints.ENDPOINTS)


@dataclass(frozen=True)
class TextSlot:
    """One text of a request or response body: where it is, the text, the speaker's role and its label.

    ``kind`` is the registry row's label (``content``, ``refusal``, ``tool_arguments``, ``tool_output``,
    ``tool_definition``, ``schema``, ``reasoning``, ``name``, ``prompt``, ``input``, ``instructions``,
    ``prediction``, ``text``). ``inner`` is set for a string inside a JSON-encoded string: its path in the
    decoded document (``()``: the document is that string). ``key`` marks an object key (a JSON Schema
    property name, a key inside decoded JSON): a redaction renames it. ``field`` is the registry row's id.
    """

    path: JsonPath
    text: str
    role: str | None
    kind: str
    inner: tuple[int, ...] | None = None
    key: bool = False
    field: str = field(default="", compare=False)
    data_url: bool = False  # the decoded text of an inline file: a redaction is re-encoded into it
    # Which text per-token logprobs spell this is (the position in ``wire.alternatives.readings``: the
    # chosen tokens, then one per rank of ``top_logprobs``): tokens cannot be rewritten one by one, so a
    # redaction drops the logprobs.
    rank: int | None = None

    @property
    def group(self) -> JsonPath:
        """The text this slot is read as part of (the guard screens a group's slots joined, issue 13).

        A text part's group is the array of parts holding it (a model reads a message's parts as one
        text); any other slot is its own. Each string inside a JSON-encoded field is its own text too: the
        model reads quotes and separators between them, so two values never fuse into one word, and
        joining them would make one unsafe value redact every key and value of the document. A split
        across values is still seen by the guard's junction readings of neighbouring texts.
        """
        path = self.path
        if self.inner is not None:
            return (*path, "<json>", *self.inner)
        if self.rank is not None:  # each reading of the tokens is a text of its own
            return (*path, "<rank>", self.rank)
        if self.data_url:  # a file is a text of its own, not a part joined with the message's text
            return path
        if len(path) >= 3 and isinstance(path[-2], int) and path[-3] in _PART_ARRAYS:
            return path[:-2]
        return path


# Arrays of content parts: message content, tool-call output parts, reasoning summary parts.
_PART_ARRAYS = ("content", "output", "summary")


def check_endpoint(endpoint: str) -> None:
    """Raise ValueError for an endpoint name the registry does not know."""
    endpoints.endpoint(endpoint)


def choice_index(slot: TextSlot) -> int | None:
    """The position in ``choices`` of a response slot (None outside ``choices``, e.g. Responses API)."""
    path = slot.path
    if len(path) >= 2 and path[0] == "choices" and isinstance(path[1], int):
        return path[1]
    return None


def replace_texts(body: Mapping[str, Any], replacements: Mapping[Any, str]) -> dict[str, Any]:
    """A deep copy of ``body`` with new texts put back; everything else untouched.

    Keys are ``TextSlot``s (a JSON-encoded string is decoded, its changed strings replaced and re-encoded;
    a ``key`` slot renames the key; a ``data_url`` slot is re-encoded into its file) or plain paths.
    """
    result = copy.deepcopy(dict(body))
    inner: dict[JsonPath, dict[tuple[int, ...], str]] = {}
    files: set[JsonPath] = set()  # the ``inner`` paths that are JSON files sent inline
    renames: list[tuple[JsonPath, str]] = []
    for where, text in replacements.items():
        slot = where if isinstance(where, TextSlot) else TextSlot(tuple(where), "", None, "")
        if slot.rank is not None:
            continue  # token logprobs: dropped whole below, with those of every replaced text
        if slot.inner is not None:
            inner.setdefault(slot.path, {})[slot.inner] = text
            files.update([slot.path] if slot.data_url else [])
        elif slot.key:
            renames.append((slot.path, text))
        elif slot.data_url:
            _assign(result, slot.path, data_url.rewrite(_string_at(result, slot.path), text))
        else:
            _assign(result, slot.path, text)
    for path, changes in inner.items():
        raw = _string_at(result, path)
        if path in files:
            document = data_url.read(raw)
            if document is None:
                raise ValueError(f"no text file at {path_param(path)}")
            _assign(result, path, data_url.rewrite(raw, _reencoded(document[0], changes)))
        else:
            _assign(result, path, _reencoded(raw, changes))
    # Deepest first, so a renamed property's own renamed children are still found by their old path.
    for path, text in sorted(renames, key=lambda r: len(r[0]), reverse=True):
        _rename(result, path, text)
    for where in replacements:
        _drop_token_details(result, where.path if isinstance(where, TextSlot) else tuple(where))
    return result


def _drop_token_details(root: Any, path: JsonPath) -> None:
    """Per-token logprobs around a replaced text spell out what it said (red team): they are dropped, and
    so are logprobs whose own tokens were redacted (their path runs through the ``logprobs`` key)."""
    node = root
    for key in path:
        if isinstance(node, dict) and "logprobs" in node:
            node["logprobs"] = [] if isinstance(node["logprobs"], list) else None
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return


def _reencoded(original: str, changes: Mapping[tuple[int, ...], str]) -> str:
    doc = structured.decode(original)
    if doc is None:
        raise ValueError("a decoded-JSON slot points at a string that is not JSON")
    return structured.splice(original, structured.replace(doc, changes))


def _string_at(root: Any, path: JsonPath) -> str:
    parent = root
    for key in path:
        parent = _child(parent, key, path)
    if not isinstance(parent, str):
        raise ValueError(f"no string at {path_param(path)}")
    return parent


def _assign(root: dict[str, Any], path: JsonPath, text: str) -> None:
    if not path:
        raise ValueError("an empty path names the whole body, not a string inside it")
    parent: Any = root
    for key in path[:-1]:
        parent = _child(parent, key, path)
    if not isinstance(_child(parent, path[-1], path), str):
        raise ValueError(f"no string at {path_param(path)}")
    parent[path[-1]] = text


def _rename(root: dict[str, Any], path: JsonPath, text: str) -> None:
    """Rename the object key at ``path`` to ``text``, keeping its place (and a free name)."""
    parent: Any = root
    for key in path[:-1]:
        parent = _child(parent, key, path)
    old = path[-1]
    if not isinstance(parent, MutableMapping) or old not in parent:
        raise ValueError(f"no key at {path_param(path)}")
    new, n = text, 1
    while new in parent and new != old:
        new, n = f"{text}{n}", n + 1
    items = [(new if k == old else k, v) for k, v in parent.items()]
    parent.clear()
    parent.update(items)


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
    return pattern_of(path)

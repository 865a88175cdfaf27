"""Path patterns over JSON bodies: ``messages[*].tool_calls[*].function.arguments``, ``input[type=mcp_call]``.

A pattern is dot-separated object keys, with three kinds of step between them:

* ``[*]``         every element of an array;
* ``[k=a|b]``     every element of an array that is an object whose ``k`` is ``a`` or ``b`` (an empty
                  alternative, ``[type=message|]``, also matches an object without ``k``);
  ``[k!=a|b]``    every object element whose ``k`` is none of them;
* ``{*}``         every value of an object (for maps with caller-chosen keys, e.g. ``prompt.variables``).

Matching never raises: a step that does not fit the body's shape (a string where an array was expected,
the other branch of a union) simply matches nothing, so one pattern per branch covers a union.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

JsonPath = tuple[str | int, ...]

_STEP = re.compile(r"\[\*\]|\[(\w+)(!?=)([^\]]*)\]|\{\*\}|\.?([A-Za-z_$][\w$]*)")


@dataclass(frozen=True)
class Step:
    """One step of a compiled pattern: a key, every element, a filtered element, or every value."""

    key: str | None = None  # an object key
    each: bool = False  # every array element ([*], or a filter)
    values: bool = False  # every object value ({*})
    field: str | None = None  # the filter's key
    allowed: frozenset[str] = frozenset()
    negated: bool = False

    def admits(self, item: Any) -> bool:
        """Whether an array element passes this step's filter."""
        if self.field is None:
            return True
        if type(item) is not dict:  # bodies are parsed JSON: plain dicts (an ABC check costs 10x more)
            return False
        value = item.get(self.field, "")
        hit = isinstance(value, str) and value in self.allowed
        return hit != self.negated


class Match(NamedTuple):
    """One place a pattern matched: its concrete path, the value there, and the first element it entered.

    A named tuple, not a frozen dataclass: every chunk of every stream makes a few, and a frozen
    dataclass's ``__init__`` costs several times a tuple's.
    """

    path: JsonPath
    value: Any
    item: Mapping[str, Any] | None


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> tuple[Step, ...]:
    """The steps of ``pattern``; ValueError names the part that is not a step."""
    steps, at = [], 0
    while at < len(pattern):
        found = _STEP.match(pattern, at)
        if found is None or found.end() == at:
            raise ValueError(f"pattern {pattern!r}: cannot read {pattern[at:]!r}")
        steps.append(_step(found))
        at = found.end()
    return tuple(steps)


def _step(found: re.Match[str]) -> Step:
    text = found.group(0)
    if text == "[*]":
        return Step(each=True)
    if text == "{*}":
        return Step(values=True)
    if found.group(1):
        allowed = frozenset(found.group(3).split("|"))
        return Step(each=True, field=found.group(1), allowed=allowed, negated=found.group(2) == "!=")
    return Step(key=found.group(4))


@dataclass
class _Node:
    """A trie of compiled patterns: patterns sharing a prefix walk the body's shared part once.

    Children are kept by kind (object key, every value, array element) so a walk does no step dispatch.
    """

    keys: dict[str, _Node] = field(default_factory=dict)
    values: _Node | None = None
    elements: list[tuple[Step, _Node]] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)

    def child(self, step: Step) -> _Node:
        """The child for ``step`` (created on first use)."""
        if step.key is not None:
            return self.keys.setdefault(step.key, _Node())
        if step.values:
            self.values = self.values or _Node()
            return self.values
        found = [node for known, node in self.elements if known == step]
        if not found:
            self.elements.append((step, _Node()))
            return self.elements[-1][1]
        return found[0]


@functools.lru_cache(maxsize=64)
def _trie(patterns: tuple[str, ...]) -> _Node:
    root = _Node()
    for pattern in patterns:
        node = root
        for step in compile_pattern(pattern):
            node = node.child(step)
        node.ends.append(pattern)
    return root


def find_all(body: Any, patterns: tuple[str, ...]) -> dict[str, list[Match]]:
    """The places each of ``patterns`` names in ``body`` (absent: none), in body order; one walk for all."""
    found: dict[str, list[Match]] = {}
    _walk_all(body, _trie(patterns), (), None, found)
    return found


def _walk_all(node: Any, trie: _Node, path: JsonPath, item: Any, found: dict[str, list[Match]]) -> None:
    for pattern in trie.ends:
        found.setdefault(pattern, []).append(Match(path, node, item))
    kind = type(node)
    if kind is dict:
        for key, child in trie.keys.items():
            if key in node:
                _walk_all(node[key], child, (*path, key), item, found)
        if trie.values is not None:
            for key, value in node.items():
                _walk_all(value, trie.values, (*path, key), item, found)
    elif kind is list and trie.elements:
        for i, element in enumerate(node):
            entered = item if item is not None or type(element) is not dict else element
            for step, child in trie.elements:
                if step.admits(element):
                    _walk_all(element, child, (*path, i), entered, found)


def find(body: Any, pattern: str) -> Iterator[Match]:
    """Every place in ``body`` that ``pattern`` names, in body order."""
    yield from _walk(body, compile_pattern(pattern), (), None)


def _walk(node: Any, steps: tuple[Step, ...], path: JsonPath, item: Any) -> Iterator[Match]:
    if not steps:
        yield Match(path, node, item)
        return
    step, rest = steps[0], steps[1:]
    if step.key is not None:
        if isinstance(node, Mapping) and step.key in node:
            yield from _walk(node[step.key], rest, (*path, step.key), item)
    elif step.values:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str):
                    yield from _walk(value, rest, (*path, key), item)
    elif isinstance(node, list):
        for i, element in enumerate(node):
            if step.admits(element):
                entered = item if item is not None or not isinstance(element, Mapping) else element
                yield from _walk(element, rest, (*path, i), entered)


def pattern_of(path: JsonPath) -> str:
    """A concrete path written as a pattern (``messages[2].content``), for messages and audit."""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")

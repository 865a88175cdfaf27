"""Strings at JSON paths inside one event payload, read and replaced in place (payloads are our copies)."""

from __future__ import annotations

from typing import Any

Path = tuple[str | int, ...]


def get_at(root: Any, path: Path) -> Any:
    """The value at ``path`` (every step must exist)."""
    for key in path:
        root = root[key]
    return root


def set_at(root: Any, path: Path, value: str) -> None:
    """Replace the value at ``path`` with ``value``."""
    get_at(root, path[:-1])[path[-1]] = value

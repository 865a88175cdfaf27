"""Command-line flags built from a settings dataclass: every field a flag, its default shown, an env variable.

``ServerSettings`` and ``ClassifierSettings`` are the one home of every default; ``serve`` and ``classify``
ask this module for their flags instead of restating them (issue 12). For each field:

- the flag is ``--`` + the name with ``_`` as ``-`` and a trailing ``_s`` (seconds) dropped
  (``classify_timeout_s`` -> ``--classify-timeout``), unless ``setting(flag=...)`` names another;
- a ``bool`` field is a ``--x/--no-x`` pair (a ``--no-x`` flag alone turns a default-on setting off);
  ``setting(choices=...)`` limits the values;
- the help text is ``setting(help=...)``, else the field's comment in the class source (same line, or the
  comment lines right above it), then ``[default: …; env: CREST_PROXY_…]``;
- the environment variable is ``CREST_PROXY_`` + the flag in upper case (``CREST_PROXY_PORT``; for a lone
  ``--no-x`` flag, the field's name); it replaces the default, and a flag on the command line replaces both;
- ``setting`` (in ``crest_proxy.settings``) sets the flag, help, choices or secrecy of one field;
- a ``setting(secret=True)`` field takes no value on the command line (``ps`` would show it): its flag is
  ``--<flag>-env VAR``, the variable to read it from (default: its own ``CREST_PROXY_…`` variable).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from crest_proxy.errors import ConfigError

ENV_PREFIX = "CREST_PROXY_"
_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:")
T = TypeVar("T")


@dataclass(frozen=True)
class Flag:
    """How one settings field appears on the command line."""

    name: str
    option: str
    env: str
    kind: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    secret: bool = False

    @property
    def dest(self) -> str:
        """The attribute of the parsed namespace holding the value."""
        return f"setting_{self.name}"


def flags_of(cls: type, only: Iterable[str] | None = None) -> list[Flag]:
    """The flags of settings class ``cls`` (all fields, or those named in ``only``), in field order."""
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    wanted = None if only is None else set(only)
    return [
        _flag(field, hints[field.name], comments.get(field.name, ""))
        for field in dataclasses.fields(cls)
        if wanted is None or field.name in wanted
    ]


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    only: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Add a flag for every field of ``cls`` to ``parser``; environment variables set their defaults."""
    env = os.environ if environ is None else environ
    group = parser.add_argument_group(cls.__name__)
    for flag in flags_of(cls, only):
        _add(group, flag, env)


def settings_from(
    cls: type[T], args: argparse.Namespace, *, environ: Mapping[str, str] | None = None, **fixed: Any
) -> T:
    """An instance of ``cls`` from the parsed flags that ``add_flags`` added (``fixed`` values win)."""
    env = os.environ if environ is None else environ
    values = {
        flag.name: _secret(flag, getattr(args, flag.dest), env) if flag.secret else getattr(args, flag.dest)
        for flag in flags_of(cls)
        if hasattr(args, flag.dest)
    }
    return cls(**{**values, **fixed})


def _flag(field: dataclasses.Field[Any], hint: Any, comment: str) -> Flag:
    meta = field.metadata
    option = meta.get("flag") or "--" + field.name.removesuffix("_s").replace("_", "-")
    # A "--no-x" flag's variable holds the setting itself (CREST_PROXY_AUDIT_FILE=0), not its negation.
    env_name = field.name.removesuffix("_s") if option.startswith("--no-") else option.lstrip("-")
    env = ENV_PREFIX + env_name.replace("-", "_").upper()
    help_text = meta.get("help") or comment or field.name.replace("_", " ")
    return Flag(
        name=field.name,
        option=option,
        env=env,
        kind=_base_type(hint),
        default=field.default,
        help=help_text,
        choices=meta.get("choices"),
        secret=bool(meta.get("secret")),
    )


def _add(group: argparse._ArgumentGroup, flag: Flag, environ: Mapping[str, str]) -> None:
    shown = "" if flag.default is None else f"default: {flag.default}; "
    if flag.secret:
        help_text = f"{flag.help} [read from the environment variable VAR; default VAR: {flag.env}]"
        group.add_argument(f"{flag.option}-env", dest=flag.dest, metavar="VAR", help=_escape(help_text))
        return
    default = flag.default
    if flag.env in environ:
        default = _from_env(flag, environ[flag.env])
    help_text = _escape(f"{flag.help} [{shown}env: {flag.env}]")
    if flag.kind is bool:
        # "--no-x" names the one flag that turns a default-on setting off; else a --x/--no-x pair.
        action = "store_false" if flag.option.startswith("--no-") else argparse.BooleanOptionalAction
        group.add_argument(flag.option, dest=flag.dest, action=action, default=default, help=help_text)
        return
    group.add_argument(
        flag.option, dest=flag.dest, type=_converter(flag.kind), default=default, choices=flag.choices,
        help=help_text, metavar=_metavar(flag),
    )  # fmt: skip


def _secret(flag: Flag, variable: str | None, environ: Mapping[str, str]) -> str | None:
    """A secret's value from the environment; naming a variable that is not set is a configuration error."""
    value = environ.get(variable or flag.env) or None
    if variable is not None and value is None:
        raise ConfigError(
            f"{flag.option}-env: environment variable {variable} is not set; set it or drop the flag"
        )
    return value


def _from_env(flag: Flag, raw: str) -> Any:
    try:
        value = _converter(flag.kind)(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{flag.env}={raw!r}: {exc}; expected a {flag.kind.__name__}") from exc
    if flag.choices is not None and value not in flag.choices:
        allowed = ", ".join(map(str, flag.choices))
        raise ConfigError(f"{flag.env}={raw!r} is not allowed; use one of: {allowed}")
    return value


def _converter(kind: type) -> Callable[[str], Any]:
    if kind is bool:
        return _parse_bool
    return kind


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off"}:
        return False
    raise ValueError("not a boolean (use 1/0, true/false, yes/no, on/off)")


def _base_type(hint: Any) -> type:
    """``int`` for ``int`` and ``int | None``; the one non-None member of an optional type."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [m for m in typing.get_args(hint) if m is not type(None)]
        if len(members) == 1:
            return _base_type(members[0])
    if hint in (str, int, float, bool, Path):
        return hint  # type: ignore[no-any-return]
    raise TypeError(
        f"settings field type {hint!r} has no command-line form; use str, int, float, bool or Path"
    )


def _metavar(flag: Flag) -> str | None:
    if flag.choices is not None:
        return None
    return {int: "N", float: "X", Path: "PATH"}.get(flag.kind, "TEXT")


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def _field_comments(cls: type) -> dict[str, str]:
    """Each field's comment in the class source: the one on its line, else the comment lines above it."""
    comments: dict[str, str] = {}
    above: list[str] = []
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # installed without sources: the help falls back to the field's name
        return comments
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = _FIELD_LINE.match(line)
        if match and not stripped.startswith(("def ", "@", "return ")):
            inline = line.partition("  # ")[2].strip()
            comments[match.group(1)] = inline or " ".join(above)
        above = []
    return comments

"""Validation for policy files: constrained field types, and errors phrased as ``<key>: <problem>; <fix>``.

Pure. The field types below raise errors of type ``invalid_policy`` whose message is already phrased;
``describe_errors`` phrases pydantic's built-in errors the same way, and ``config`` prefixes the file.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator
from pydantic_core import ErrorDetails, PydanticCustomError

_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def invalid(detail: str) -> PydanticCustomError:
    """A validation error whose message is ``detail`` as written (no template expansion)."""
    # The detail travels in the context: a message template would treat a regex's braces as placeholders.
    return PydanticCustomError("invalid_policy", "{detail}", {"detail": detail})


def _check_unit(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise invalid(f"{value:g} is out of range; use a number from 0 to 1")
    return value


def _check_positive(value: float) -> float:
    if not 0 < value < math.inf:
        raise invalid(f"{value:g} is not a positive number; use a number of seconds above 0")
    return value


def _check_pattern(kind: str, pattern: str, allowed: str) -> AfterValidator:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise invalid(f"{value!r} is not a valid {kind}; use {allowed}")
        return value

    return AfterValidator(check)


def _check_at_least(minimum: int) -> AfterValidator:
    def check(value: int) -> int:
        if value < minimum:
            raise invalid(f"{value} is too small; use a whole number of characters from {minimum} up")
        return value

    return AfterValidator(check)


def _check_key_ref(value: str) -> str:
    if re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", value):
        return value
    if re.fullmatch(r"sha256:[0-9a-fA-F]{64}", value):
        if value[7:].lower() == _EMPTY_SHA256:
            raise invalid("the digest of an empty key; hash a real key (crest-proxy policy hash-key)")
        return value.lower()
    # Never echo the value: it may be a pasted secret.
    raise invalid("not an env:VAR or sha256:<64 hex digits> reference; policy files hold no secrets")


def _check_env_ref(value: str) -> str:
    if re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", value):
        return value
    raise invalid("a literal secret is not allowed; use env:VAR_NAME and set that environment variable")


def _check_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(f"{value!r} is not an http(s) URL; use e.g. https://api.openai.com/v1")
    if parts.username or parts.password:
        raise invalid("credentials in the URL are not allowed; use upstream.api_key: env:VAR_NAME")
    return value.rstrip("/")  # endpoints are appended as "/chat/completions"


def _reject_bool(value: Any) -> Any:
    # pydantic reads true as 1 for numbers, and YAML 1.1 reads yes/on as true: `threshold: yes` is a typo.
    if isinstance(value, bool):
        raise invalid(f"{str(value).lower()} is a boolean, not a number; use a number")
    return value


_NOT_BOOL = BeforeValidator(_reject_bool)
Threshold = Annotated[float, _NOT_BOOL, AfterValidator(_check_unit)]
Seconds = Annotated[float, _NOT_BOOL, AfterValidator(_check_positive)]
KeyRef = Annotated[str, AfterValidator(_check_key_ref)]
EnvRef = Annotated[str, AfterValidator(_check_env_ref)]
BaseUrl = Annotated[str, AfterValidator(_check_base_url)]
TenantName = Annotated[str, _check_pattern("tenant name", r"[a-z0-9][a-z0-9_-]*", "a-z, 0-9, '-', '_'")]
RuleName = Annotated[str, _check_pattern("rule name", r"[A-Za-z0-9][A-Za-z0-9_.-]*", "letters, 0-9, '.-_'")]
LanguageCode = Annotated[str, _check_pattern("language code", r"[a-z]{2}", "an ISO-639-1 code like sw")]


def _check_tokens(value: int) -> int:
    if value < 1:
        raise invalid(f"{value} is not positive; use a whole number of tokens, e.g. 32768 (64 windows)")
    return value


ScreenTokens = Annotated[int, _NOT_BOOL, AfterValidator(_check_tokens)]
WindowChars = Annotated[int, _NOT_BOOL, _check_at_least(1)]
ContextChars = Annotated[int, _NOT_BOOL, _check_at_least(0)]


# Built-in error families (the part of pydantic's error type before "_") and how to fix each.
_EXPECTED = {
    "float": "is not a number; use a number like 0.5",
    "int": "is not a whole number; use one like 400",
    "bool": "is not a boolean; use true or false",
    "string": "is not text; use a string (quote it in YAML)",
    "tuple": "is not a list; use a YAML list like [a, b]",
    "list": "is not a list; use a YAML list like [a, b]",
    "dict": "is not a mapping; use key: value pairs",
    "model": "is not a mapping; use key: value pairs",
}
# Where the value may be a pasted secret, error messages never repeat it.
_SECRET_KEYS = frozenset({"keys", "api_key"})


def describe_errors(errors: Iterable[ErrorDetails], root: type[BaseModel]) -> list[str]:
    """One ``<dotted.key>: <problem>; <fix>`` line per error, for a model of type ``root``."""
    return [f"{dotted(error['loc'])}: {_describe(error, root)}" for error in errors]


def dotted(loc: Sequence[int | str]) -> str:
    """A pydantic location as a dotted key: ``('rules', 2, 'pattern')`` -> ``rules[2].pattern``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic marks errors in a mapping's key this way; the key is already named
            continue
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(error: ErrorDetails, root: type[BaseModel]) -> str:
    """What is wrong and how to fix it, for one error."""
    kind, loc = error["type"], error["loc"]
    ctx = error.get("ctx") or {}
    if kind == "invalid_policy":
        return str(ctx["detail"])
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(root, loc[:-1])) or "none"
        return f"unknown key; allowed keys: {allowed}"
    if kind == "missing":
        return "required key is missing; add it"
    if kind in ("enum", "literal_error"):
        return f"{_show(error['input'], loc)} is not allowed; use one of: {ctx['expected']}"
    family = kind.split("_", 1)[0]
    if family in _EXPECTED:
        return f"{_show(error['input'], loc)} {_EXPECTED[family]}"
    return f"{error['msg']}; see policies/default.yaml for the expected form"


def _show(value: Any, loc: Sequence[int | str]) -> str:
    """A short rendering of an offending value (never of a secret)."""
    if _SECRET_KEYS.intersection(p for p in loc if isinstance(p, str)):
        return "the value"
    if value is None:
        return "an empty value"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names of the model found at ``loc`` under ``root`` (empty when it is not a model)."""
    node: Any = root
    for part in loc:
        node = _child(_without_none(node), part)
    node = _without_none(node)
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _child(node: Any, part: int | str) -> Any:
    """The type one location step below ``node``: a model field, a tuple item or a mapping value."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field else None
    args = typing.get_args(node)
    if typing.get_origin(node) is tuple and args:
        return args[0]
    if typing.get_origin(node) is dict and len(args) == 2:
        return args[1]
    return None


def _without_none(node: Any) -> Any:
    """``X`` for ``X | None``; anything else unchanged."""
    if typing.get_origin(node) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(node) if a is not type(None)]
        return rest[0] if len(rest) == 1 else node
    return node

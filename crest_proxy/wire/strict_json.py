"""Strict JSON (RFC 8259) for bodies in and out: what Python's ``json`` accepts but JSON does not is refused.

``json.loads`` takes ``NaN`` and ``Infinity``, turns ``1e400`` into ``inf``, keeps a lone ``"\\ud800"`` as a
string that cannot be encoded back to UTF-8, and raises ``ValueError`` (not ``JSONDecodeError``) for an
integer over 4,300 digits. Each of those used to end as an HTTP 500 (issue 14); here each is a
``JsonRejected`` whose message says what was wrong, for the caller to answer 400 (client) or 502 (upstream).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Python refuses to convert longer digit strings (sys.int_info.default_max_str_digits) for CVE-2020-10735.
MAX_INT_DIGITS = 4300
# A \u escape of a UTF-16 surrogate; only when one is present are the parsed strings walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRejected(ValueError):
    """The text is not strict JSON; the message says why, in words a client can act on."""


def loads(raw: bytes | str) -> Any:
    """Parse strict JSON: no NaN/Infinity, no out-of-range numbers, no lone surrogates, no giant integers."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRejected(f"the body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise JsonRejected(f"the body is not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise JsonRejected("the body's JSON is nested too deeply") from exc
    if _SURROGATE_ESCAPE.search(data):
        _reject_lone_surrogates(value)
    return value


def _constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not a JSON number; send a finite number or null")


def _float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise JsonRejected(f"the number {_short(literal)} is out of range (beyond ±1.8e308)")
    return value


def _int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JsonRejected(f"an integer has {digits} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(literal)


def _short(literal: str) -> str:
    return literal if len(literal) <= 40 else literal[:37] + "..."


# Built once: ``json.loads`` with hooks builds a decoder (and its scanner) per call, like json's own default.
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)


def _reject_lone_surrogates(value: Any) -> None:
    """Raise when any string (key or value) holds an unpaired UTF-16 surrogate (not encodable as UTF-8)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise JsonRejected(
                    "a string holds a lone UTF-16 surrogate escape (such as \\ud800); "
                    "pair it with its other half or remove it"
                )
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)

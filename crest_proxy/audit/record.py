"""What an audit line holds: a decision record as one line of JSON, or a note about the log itself.

Notes are chained like records and tell a reader what happened to the log rather than to a request:
``gap`` (records that could not be written: how many, when, why), ``reopen`` (the file was deleted or
replaced while serving), ``torn`` (a cut-off last line was repaired at start). A note has an ``event``
member and no ``request_id``; ``audit query``/``stats`` skip notes, ``audit verify`` reports them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from crest_proxy.types import AuditRecord

AUDIT_MODES = ("none", "hash", "redacted", "full")
NOTE_EVENTS = ("gap", "reopen", "torn")


@dataclass(frozen=True)
class AuditContent:
    """The hash and (policy permitting) the text an audit record keeps of the screened content."""

    sha256: str | None
    content: str | None


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_for_audit(mode: str, original: str, redacted: str | None) -> AuditContent:
    """What the audit mode (none | hash | redacted | full) lets a record keep of ``original``."""
    if mode not in AUDIT_MODES:
        raise ValueError(f"unknown audit content mode {mode!r}; expected one of {', '.join(AUDIT_MODES)}")
    if mode == "none":
        return AuditContent(None, None)
    digest = sha256_hex(original)
    if mode == "hash":
        return AuditContent(digest, None)
    if mode == "redacted":
        return AuditContent(digest, original if redacted is None else redacted)
    return AuditContent(digest, original)


def record_to_json(record: AuditRecord) -> str:
    """One line of JSON for ``record``: fields in declaration order, ASCII only, no raw line breaks."""
    # ensure_ascii escapes every non-ASCII character, so U+2028/U+2029 and U+0085 (line breaks to JS and
    # to str.splitlines) cannot split a line, and json escapes control characters such as "\n".
    data = {f.name: _jsonable(getattr(record, f.name)) for f in dataclasses.fields(record)}
    return _dumps(data)


def note_json(event: str, **fields: Any) -> str:
    """One line of JSON for a note about the log (``ts`` first, like records, so ``--since`` works)."""
    if event not in NOTE_EVENTS:
        raise ValueError(f"unknown audit note {event!r}; expected one of {', '.join(NOTE_EVENTS)}")
    return _dumps({"ts": utc_now(), "event": event, **{k: _jsonable(v) for k, v in fields.items()}})


def utc_now() -> str:
    """Now, in the records' ``ts`` format (UTC, milliseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    """``value`` made strict JSON: tuples as lists, NaN/inf as strings, unknown objects as ``str()``."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)

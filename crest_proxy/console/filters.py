"""What the console's decisions table shows: a filter parsed from query parameters, and a page of records.

Parsing is strict: an unknown action, a score outside 0..1 or an unreadable time is a ``FilterError`` that
names the parameter, shown above the (empty) table rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crest_proxy.audit.query import AuditQuery, parse_since

ACTIONS = ("allow", "log", "redact", "block")
DIRECTIONS = ("inbound", "outbound")
# The query parameters a filter reads, in the order the form shows them.
PARAMETERS = (
    "since", "until", "tenant", "action", "direction", "language", "rule", "request_id", "min_score",
    "max_score",
)  # fmt: skip
PAGE_SIZE = 50


class FilterError(ValueError):
    """A query parameter that cannot be a filter; the message names it."""


@dataclass(frozen=True)
class RecordFilter:
    """Which decision records to show: exact fields, a time range and a score range (all optional)."""

    tenant: str | None = None
    action: str | None = None
    direction: str | None = None
    request_id: str | None = None
    language: str | None = None
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_score: float | None = None
    max_score: float | None = None
    raw: Mapping[str, str] = field(default_factory=dict, compare=False)

    def exact(self) -> AuditQuery:
        """The exact-field part, which both readers pre-filter on (bytes in files, indexes in the DB)."""
        return AuditQuery(self.tenant, self.action, self.direction, self.request_id, self.since)

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether a parsed decision record passes every condition."""
        if not self.exact().matches(record):
            return False
        if self.until is not None and AuditQuery(since=self.until).matches(record):
            return False  # at or after ``until``
        if self.language is not None and self.language not in str(record.get("language") or "").split(","):
            return False
        if self.rule is not None and self.rule not in (record.get("rules") or ()):
            return False
        return _score_in(record.get("score"), self.min_score, self.max_score)


def _score_in(score: Any, low: float | None, high: float | None) -> bool:
    if low is None and high is None:
        return True
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        return False  # unscored records have no place in a score range
    return (low is None or score >= low) and (high is None or score <= high)


def parse_filter(params: Mapping[str, str]) -> RecordFilter:
    """A ``RecordFilter`` from query parameters; empty values mean "any"; raises ``FilterError``."""
    given = {k: params[k].strip() for k in PARAMETERS if params.get(k, "").strip()}
    return RecordFilter(
        tenant=given.get("tenant"),
        action=_choice(given, "action", ACTIONS),
        direction=_choice(given, "direction", DIRECTIONS),
        request_id=given.get("request_id"),
        language=given.get("language"),
        rule=given.get("rule"),
        since=_time(given, "since"),
        until=_time(given, "until"),
        min_score=_score(given, "min_score"),
        max_score=_score(given, "max_score"),
        raw=given,
    )


def _choice(given: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = given.get(name)
    if value is not None and value not in allowed:
        raise FilterError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _time(given: Mapping[str, str], name: str) -> datetime | None:
    value = given.get(name)
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError:
        raise FilterError(f"{name}: {value!r} is not a time; use 2026-11-22T07:00 or 15m, 24h, 7d") from None


def _score(given: Mapping[str, str], name: str) -> float | None:
    value = given.get(name)
    if value is None:
        return None
    try:
        score = float(value)
    except ValueError:
        score = -1.0
    if not 0.0 <= score <= 1.0:
        raise FilterError(f"{name}: {value!r} is not a score between 0 and 1")
    return score


@dataclass(frozen=True)
class Page:
    """One page of decision records, newest first, and the cursor of the next (older) page."""

    records: tuple[dict[str, Any], ...]
    next_cursor: str | None
    scanned_bytes: int = 0  # log read for this page (files)
    scanned_rows: int = 0  # rows examined for this page when it stopped at its budget (database)

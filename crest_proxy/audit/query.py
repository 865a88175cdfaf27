"""Reading audit logs back: stream records from (rotated) files, filter them cheaply, summarise them.

Built for logs of gigabytes: files are read line by line in binary, a line that lacks one of the filter's
exact ``"key":"value"`` byte strings is skipped without being parsed (records are written with fixed
separators and ASCII-escaped values, so a matching record always contains them), and lines that pass are
parsed with orjson when it is installed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

from crest_proxy.audit.files import in_rotation_order

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
BUCKETS = {"minute": 16, "hour": 13, "day": 10}  # how much of an ISO timestamp names the bucket


@dataclass(frozen=True)
class AuditQuery:
    """Which records to keep: exact tenant, action, direction, request id; ``ts`` at or after ``since``."""

    tenant: str | None = None
    action: str | None = None
    direction: str | None = None
    request_id: str | None = None
    since: datetime | None = None

    def _fields(self) -> dict[str, str]:
        wanted = {
            "tenant": self.tenant,
            "action": self.action,
            "direction": self.direction,
            "request_id": self.request_id,
        }
        return {k: v for k, v in wanted.items() if v is not None}

    def needles(self) -> tuple[bytes, ...]:
        """Byte strings every matching line contains, exactly as the audit writer encodes them."""
        return tuple(
            f'"{k}":{json.dumps(v, ensure_ascii=True)}'.encode("ascii") for k, v in self._fields().items()
        )

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether a parsed record passes every condition."""
        if any(record.get(k) != v for k, v in self._fields().items()):
            return False
        return self.since is None or _timestamp(record.get("ts")) >= self.since


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2026-11-22``, ``2026-11-22T07:00`` (UTC unless it says otherwise) or ``15m``/``24h``/``7d`` ago."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), _UNITS[relative.group(2)]
        return (now or datetime.now(timezone.utc)) - timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r}: use an ISO date or time (2026-11-22T07:00) or 15m, 24h, 7d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _timestamp(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)  # unreadable: older than any --since
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _json_loads() -> Callable[[bytes], Any]:
    try:
        import orjson
    except ImportError:  # optional: the standard parser is about 3x slower on these lines
        return json.loads
    return orjson.loads


class Found(NamedTuple):
    """One matching record: the line as written (without its newline) and its parsed fields."""

    # A NamedTuple rather than a frozen dataclass: one is made per record, and on a gigabyte of log the
    # dataclass's __init__ alone costs seconds.

    line: bytes
    record: dict[str, Any]


def find(paths: Iterable[Path], query: AuditQuery) -> Iterator[Found]:
    """Matching records of ``paths``, oldest file first; unparsable lines and notes are skipped."""
    loads = _json_loads()
    needles = query.needles()
    oldest = _ts_key(query.since)
    check = query.matches if query != AuditQuery() else None  # no filter: skip the per-record test
    for path in in_rotation_order(paths):
        for line in _candidate_lines(Path(path), needles):
            if oldest and _written_before(line, oldest):
                continue
            try:
                record = loads(line)
            except ValueError:
                continue
            if is_decision(record) and (check is None or check(record)):
                yield Found(line, record)


def is_decision(record: Any) -> bool:
    """Whether a parsed line is a decision record (not a note about the log: gap, reopen, torn)."""
    return isinstance(record, dict) and not ("event" in record and "request_id" not in record)


_CHUNK = 8 << 20


def _candidate_lines(path: Path, needles: tuple[bytes, ...]) -> Iterator[bytes]:
    """The lines (without their newline) of ``path`` that contain every needle.

    Read in 8 MiB blocks cut at line ends: a block lacking a needle is skipped at memchr speed (a request
    id search touches almost no line), and splitting a block is cheaper than iterating a file line by line.
    """
    with path.open("rb") as handle:
        rest = b""
        while block := handle.read(_CHUNK):
            block = rest + block
            end = block.rfind(b"\n") + 1
            block, rest = block[:end], block[end:]
            yield from _matching(block, needles)
        yield from _matching(rest, needles)  # a last line without a newline (a torn write)


def _matching(block: bytes, needles: tuple[bytes, ...]) -> Iterator[bytes]:
    if not block or not all(n in block for n in needles):
        return
    lines = block.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if not needles:
        yield from lines
        return
    for line in lines:
        if all(n in line for n in needles):
            yield line


# The writer puts ``ts`` first, in UTC with milliseconds: ``{"ts":"2026-11-22T07:28:54.002+00:00",…``.
_TS = slice(len('{"ts":"'), len('{"ts":"2026-11-22T07:28:54.002+00:00'))


def _ts_key(since: datetime | None) -> bytes | None:
    """``since`` in the writer's ``ts`` format, for comparing bytes without parsing the line."""
    if since is None:
        return None
    return since.astimezone(timezone.utc).isoformat(timespec="milliseconds").encode("ascii")


def _written_before(line: bytes, oldest: bytes) -> bool:
    """True when the line's ``ts`` is in the writer's format and earlier than ``oldest`` (else: parse it)."""
    stamp = line[_TS]
    return line.startswith(b'{"ts":"') and stamp.endswith(b"+00:00") and stamp < oldest


@dataclass(frozen=True)
class Bucket:
    """Decisions in one time bucket and how many of them blocked."""

    start: str
    decisions: int
    blocked: int

    @property
    def blocked_rate(self) -> float:
        """Blocked decisions / decisions."""
        return self.blocked / self.decisions if self.decisions else 0.0


@dataclass(frozen=True)
class AuditSummary:
    """Counts over the records that matched: per tenant, action, direction, language, rule, time bucket."""

    records: int
    tenants: tuple[tuple[str, int], ...]
    actions: tuple[tuple[str, int], ...]
    directions: tuple[tuple[str, int], ...]
    languages: tuple[tuple[str, int], ...]
    rules: tuple[tuple[str, int], ...]
    buckets: tuple[Bucket, ...]


def summarise(found: Iterable[Found], *, bucket: str = "hour", top_rules: int = 10) -> AuditSummary:
    """Count ``found`` records; ``bucket`` (minute | hour | day) sets the blocked-rate resolution."""
    width = BUCKETS[bucket]
    # One tally per distinct (tenant, action, direction, language, bucket), split up at the end: a single
    # dictionary update per record keeps a gigabyte-sized log at the speed of parsing it.
    combos: Counter[tuple[Any, ...]] = Counter()
    rules: Counter[str] = Counter()
    for item in found:
        r = item.record
        combos[
            (r.get("tenant"), r.get("action"), r.get("direction"), r.get("language"), r.get("ts", "")[:width])
        ] += 1
        for rule in r.get("rules") or ():
            rules[rule] += 1
    return AuditSummary(
        records=sum(combos.values()),
        tenants=_split(combos, 0),
        actions=_split(combos, 1),
        directions=_split(combos, 2),
        languages=_split(combos, 3),
        rules=tuple(rules.most_common(top_rules)),
        buckets=_buckets(combos),
    )


def _split(combos: Counter[tuple[Any, ...]], index: int) -> tuple[tuple[str, int], ...]:
    """Counts by one field of the tallies, most common first (missing values as ``unknown``)."""
    counts: Counter[str] = Counter()
    for key, n in combos.items():
        counts[str(key[index] or "unknown")] += n
    return tuple(counts.most_common())


def _buckets(combos: Counter[tuple[Any, ...]]) -> tuple[Bucket, ...]:
    decisions: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    for (_, action, _, _, slot), n in combos.items():
        decisions[slot] += n
        blocked[slot] += n if action == "block" else 0
    return tuple(Bucket(slot, decisions[slot], blocked[slot]) for slot in sorted(decisions))

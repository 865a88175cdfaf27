"""The overview's numbers: decisions over time by action and tenant, block rate by language, top rules,
classifier latency percentiles. Pure counting over records; the reader decides which records."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OVERVIEW_LIMIT = 200_000  # newest records counted; more would make the page slow on a big log
_WIDTHS = (("minute", 16), ("hour", 13), ("day", 10))  # how much of an ISO ts names a bucket


@dataclass(frozen=True)
class Series:
    """Counts per time bucket for each key (action or tenant), buckets oldest first."""

    buckets: tuple[str, ...]
    counts: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Rate:
    """Blocked decisions out of all decisions for one language."""

    language: str
    decisions: int
    blocked: int

    @property
    def rate(self) -> float:
        """Blocked / decisions."""
        return self.blocked / self.decisions if self.decisions else 0.0


@dataclass(frozen=True)
class Overview:
    """Everything the overview page draws."""

    records: int
    capped: bool
    bucket: str
    by_action: Series
    by_tenant: Series
    block_rates: tuple[Rate, ...]
    top_rules: tuple[tuple[str, int], ...]
    latency_ms: Mapping[str, float]


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ascending values by the nearest-rank method (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(
    records: Iterable[Mapping[str, Any]], *, limit: int = OVERVIEW_LIMIT, top: int = 10
) -> Overview:
    """Count ``records`` (newest first; at most ``limit`` of them) into an ``Overview``."""
    rows: list[tuple[str, str, str, str]] = []
    rules: Counter[str] = Counter()
    latencies: list[float] = []
    for record in records:
        if len(rows) >= limit:
            break
        ts, action = str(record.get("ts", "")), str(record.get("action") or "unknown")
        rows.append(
            (ts, action, str(record.get("tenant") or "unknown"), str(record.get("language") or "unknown"))
        )
        rules.update(str(r) for r in record.get("rules") or ())
        latency = record.get("latency_ms")
        if isinstance(latency, (int, float)) and not isinstance(latency, bool):
            latencies.append(float(latency))
    bucket, width = _bucket_width([r[0] for r in rows])
    latencies.sort()
    return Overview(
        records=len(rows),
        capped=len(rows) >= limit,
        bucket=bucket,
        by_action=_series(rows, width, 1),
        by_tenant=_series(rows, width, 2, keep=6),
        block_rates=_block_rates(rows),
        top_rules=tuple(rules.most_common(top)),
        latency_ms={f"p{int(q * 100)}": percentile(latencies, q) for q in (0.5, 0.9, 0.99)}
        | {"max": latencies[-1] if latencies else 0.0},
    )


def _bucket_width(stamps: list[str]) -> tuple[str, int]:
    """The finest bucket that gives at most 48 bars over the records' time span."""
    for name, width in _WIDTHS:
        if len({s[:width] for s in stamps}) <= 48:
            return name, width
    return _WIDTHS[-1]


def _series(rows: list[tuple[str, str, str, str]], width: int, index: int, keep: int = 10) -> Series:
    counts: Counter[tuple[str, str]] = Counter((r[0][:width], r[index]) for r in rows)
    buckets = tuple(sorted({b for b, _ in counts}))
    totals: Counter[str] = Counter()
    for (_, key), n in counts.items():
        totals[key] += n
    kept = [k for k, _ in totals.most_common(keep)]
    other = [k for k in totals if k not in kept]
    series = {k: tuple(counts[(b, k)] for b in buckets) for k in kept}
    if other:  # the long tail of tenants in one series, so the chart keeps a readable legend
        series["other"] = tuple(sum(counts[(b, k)] for k in other) for b in buckets)
    return Series(buckets, series)


def _block_rates(rows: list[tuple[str, str, str, str]]) -> tuple[Rate, ...]:
    decisions: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    for _, action, _, languages in rows:
        for language in languages.split(","):
            decisions[language] += 1
            blocked[language] += action == "block"
    return tuple(Rate(lang, n, blocked[lang]) for lang, n in decisions.most_common(20))

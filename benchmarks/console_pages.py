"""How fast the audit console's pages come from a large audit log (default ~1 GB) and a million-row table.

Usage: ``python benchmarks/console_pages.py [--gigabytes 1.0] [--rows 1000000] [--workdir DIR] [--keep]``.
The log is generated as ``benchmarks/audit_query.py`` does (the proxy's serialisation and chain; 100
tenants, 1 in 10 blocked, 0.5 s apart). ``--rows`` also loads that many of its lines into a throwaway
PostgreSQL (Debian's ``postgresql``; skipped when absent) and times the same pages there. Prints markdown.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.audit_query import generate  # noqa: E402
from crest_proxy.console.filters import parse_filter  # noqa: E402
from crest_proxy.console.overview import summarise  # noqa: E402
from crest_proxy.console.reader import FileReader, RecordReader  # noqa: E402

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def timed(label: str, work: Callable[[], object]) -> str:
    """One table row: the page, what it found, wall milliseconds."""
    started = time.perf_counter()
    result = work()
    return f"| {label} | {result} | {(time.perf_counter() - started) * 1000:.0f} |"


def deep_page(reader: RecordReader, params: dict[str, str], pages: int) -> str:
    """Follow ``pages`` cursors; the records on the last page."""
    cursor, shown = None, 0
    for _ in range(pages):
        page = reader.page(parse_filter(params), cursor, 50)
        cursor, shown = page.next_cursor, len(page.records)
    return f"{shown} records"


def rows_for(reader: RecordReader, lines: int, *, request_scan: bool) -> list[str]:
    """The timed pages for one reader."""
    last = START + timedelta(seconds=(lines - 1) * 0.5)
    day_ago = (last - timedelta(hours=24)).isoformat()
    oldest, newest = f"req_{0:032x}", f"req_{lines - 1:032x}"

    def first(params: dict[str, str]) -> str:
        return f"{len(reader.page(parse_filter(params), None, 50).records)} records"

    rows = [
        timed("decisions, no filter (first page)", lambda: first({})),
        timed(
            "decisions ?tenant=tenant-42&action=block",
            lambda: first({"tenant": "tenant-42", "action": "block"}),
        ),
        timed(
            "… 20 pages in a row (total)",
            lambda: deep_page(reader, {"tenant": "tenant-42", "action": "block"}, 20),
        ),
        timed(
            "decisions ?language=th&min_score=0.95", lambda: first({"language": "th", "min_score": "0.95"})
        ),
        timed("decisions ?request_id=<newest>", lambda: first({"request_id": newest})),
        timed("decisions ?request_id=<oldest> (whole log)", lambda: first({"request_id": oldest})),
        timed("request page of the oldest record", lambda: f"{len(reader.request(oldest))} records"),
        timed("decisions ?rule=no-such-rule (no match)", lambda: first({"rule": "no-such-rule"})),
        timed(
            "overview, last 24 h",
            lambda: f"{summarise(r.record for r in reader.newest(parse_filter({'since': day_ago}))).records}",
        ),
    ]
    if not request_scan:
        rows = [r for r in rows if "oldest" not in r]
    return rows


def main() -> None:
    """Generate, time, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=0, help="also time a PostgreSQL table of this many rows")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crest-console-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the log (and reuse a kept one)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / "crest-audit.jsonl"
    try:
        if not (args.keep and path.is_file()):
            generate(path, int(args.gigabytes * 1e9))
        lines = sum(1 for _ in path.open("rb"))
        print(
            f"| page ({lines:,} lines, {path.stat().st_size / 1e9:.2f} GB file) | found | ms |\n|---|---|---|"
        )
        print("\n".join(rows_for(FileReader([path]), lines, request_scan=True)))
        if args.rows:
            _database(path, args.rows)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


def _database(path: Path, rows: int) -> None:
    """Load the log's first ``rows`` lines into PostgreSQL (COPY) and time the same pages there."""
    from benchmarks.console_db import loaded_database
    from crest_proxy.console.dbreader import DatabaseReader

    with loaded_database(path, rows) as dsn:
        print(f"\n| page ({rows:,}-row table) | found | ms |\n|---|---|---|")
        print("\n".join(rows_for(DatabaseReader(dsn), rows, request_scan=True)))


if __name__ == "__main__":
    main()

"""``crest-proxy audit``: check the hash chain (``verify``), find records (``query``), count them (``stats``).

Files may be given in any order (``crest-audit.jsonl*``): rotated files are read oldest first, the live
file last.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

_FILES_HELP = "audit log files, e.g. crest-audit.jsonl* (rotated files are put in order)"


def register(subparsers: Any) -> None:
    """Add the ``audit`` subcommand and its ``verify``, ``query`` and ``stats`` actions."""
    parser = subparsers.add_parser("audit", help="verify, search and summarise audit logs")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION")
    verify = actions.add_parser("verify", help="check the hash chain; exit 1 at the first broken link")
    verify.add_argument("files", nargs="+", type=Path, metavar="FILE", help=_FILES_HELP)
    verify.set_defaults(func=run_verify)
    query = actions.add_parser("query", help="print the records that match every filter given")
    _add_filters(query)
    query.add_argument("--json", action="store_true", help="print the matching lines as written (JSON Lines)")
    query.add_argument("--limit", type=int, default=None, help="stop after this many records")
    query.set_defaults(func=run_query)
    stats = actions.add_parser("stats", help="counts per tenant, action, direction, language, rule, and time")
    _add_filters(stats)
    stats.add_argument(
        "--bucket", choices=["minute", "hour", "day"], default="hour", help="blocked-rate bucket"
    )
    stats.add_argument("--top", type=int, default=10, help="how many rules to list (default: %(default)s)")
    stats.add_argument("--json", action="store_true", help="print the summary as JSON")
    stats.set_defaults(func=run_stats)
    parser.set_defaults(func=lambda _args: _usage(parser))


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help=_FILES_HELP)
    parser.add_argument("--tenant")
    parser.add_argument("--action", choices=["allow", "log", "redact", "block"])
    parser.add_argument("--direction", choices=["inbound", "outbound"])
    parser.add_argument("--request-id")
    parser.add_argument("--since", help="ISO date/time (UTC unless given) or 15m, 24h, 7d ago")


def run_verify(args: argparse.Namespace) -> int:
    """Check every line's hash and link; print the first break (exit 1) or a summary (exit 0)."""
    from crest_proxy.audit.chain import GENESIS, verify
    from crest_proxy.audit.files import in_rotation_order

    files = in_rotation_order(args.files)
    if (missing := _missing(files)) is not None:
        return missing
    result = verify(files)
    if result.first_break is not None:
        b = result.first_break
        print(f"BROKEN {b.file}:{b.line} (request_id {b.request_id or '?'}): {b.reason}", file=sys.stderr)
        return 1
    anchor = "the start of the log" if result.anchor in (None, GENESIS) else f"prev_hash {result.anchor}"
    plural = "s" if len(files) != 1 else ""
    print(f"ok: {result.lines} lines in {len(files)} file{plural}, chained from {anchor}")
    return 0


def run_query(args: argparse.Namespace) -> int:
    """Print matching records: a line each (or the raw JSON lines with ``--json``)."""
    from crest_proxy.audit.query import find

    query = _query(args)
    if isinstance(query, int):
        return query
    out = sys.stdout.buffer
    for count, item in enumerate(find(args.files, query), start=1):
        out.write((item.line if args.json else _row(item.record).encode("utf-8")) + b"\n")
        if args.limit is not None and count >= args.limit:
            break
    out.flush()
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """Print counts per tenant, action, direction, language and rule, and the blocked rate over time."""
    from crest_proxy.audit.query import find, summarise

    query = _query(args)
    if isinstance(query, int):
        return query
    summary = summarise(find(args.files, query), bucket=args.bucket, top_rules=args.top)
    if args.json:
        counts = {k: dict(v) for k, v in asdict(summary).items() if k not in ("records", "buckets")}
        buckets = [asdict(b) | {"blocked_rate": round(b.blocked_rate, 6)} for b in summary.buckets]
        print(json.dumps({"records": summary.records, **counts, "buckets": buckets}, indent=2))
        return 0
    print(f"records: {summary.records}")
    for title, pairs in [
        ("tenant", summary.tenants),
        ("action", summary.actions),
        ("direction", summary.directions),
        ("language", summary.languages),
        (f"top {args.top} rules", summary.rules),
    ]:
        print(f"\n{title}:")
        for name, count in pairs:
            print(f"  {name:<24} {count:>10}")
    print(f"\nblocked rate per {args.bucket} (UTC):")
    for b in summary.buckets:
        print(f"  {b.start:<16} {b.blocked:>8} / {b.decisions:<8} {100 * b.blocked_rate:6.2f}%")
    return 0


def _query(args: argparse.Namespace) -> Any:
    """The ``AuditQuery`` of the filters given, or an exit code after printing what is wrong."""
    from crest_proxy.audit.query import AuditQuery, parse_since

    if (missing := _missing(args.files)) is not None:
        return missing
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"crest-proxy: {exc}", file=sys.stderr)
        return 2
    return AuditQuery(args.tenant, args.action, args.direction, args.request_id, since)


def _missing(files: list[Path]) -> int | None:
    absent = [str(f) for f in files if not Path(f).is_file()]
    if not absent:
        return None
    print(f"crest-proxy: no such file: {', '.join(absent)}", file=sys.stderr)
    return 2


def _row(record: dict[str, Any]) -> str:
    score = record.get("score")
    fields = [
        str(record.get("ts", "")),
        str(record.get("request_id", "")),
        str(record.get("tenant", "")),
        str(record.get("direction", "")),
        str(record.get("action", "")),
        f"{score:.3f}" if isinstance(score, (int, float)) else "-",
        ",".join(record.get("rules") or ()) or "-",
        str(record.get("language") or "-"),
    ]
    return "\t".join(fields)


def _usage(parser: argparse.ArgumentParser) -> int:
    """``crest-proxy audit`` without an action: show its help."""
    parser.print_help(sys.stderr)
    return 2

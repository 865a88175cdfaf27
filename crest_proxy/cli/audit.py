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
_DB_HELP = "read the central audit store instead of files (postgresql://…; needs crest-proxy[db])"


def register(subparsers: Any) -> None:
    """Add the ``audit`` subcommand and its ``verify``, ``query`` and ``stats`` actions."""
    parser = subparsers.add_parser("audit", help="verify, search and summarise audit logs")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION")
    verify = actions.add_parser("verify", help="check the hash chain; exit 1 at the first broken link")
    verify.add_argument("files", nargs="*", type=Path, metavar="FILE", help=_FILES_HELP)
    verify.add_argument("--db", metavar="DSN", help=_DB_HELP + "; each replica's chain is checked")
    verify.add_argument("--chain", metavar="ID", help="with --db: check only this chain")
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
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help=_FILES_HELP)
    parser.add_argument("--db", metavar="DSN", help=_DB_HELP)
    parser.add_argument("--tenant")
    parser.add_argument("--action", choices=["allow", "log", "redact", "block"])
    parser.add_argument("--direction", choices=["inbound", "outbound"])
    parser.add_argument("--request-id")
    parser.add_argument("--since", help="ISO date/time (UTC unless given) or 15m, 24h, 7d ago")


def run_verify(args: argparse.Namespace) -> int:
    """Check every line's hash and link; print the first break (exit 1) or a summary (exit 0).

    Notes on the chain (gaps where records could not be written, reopened or repaired files) are listed
    after the summary: they are on the chain, so they tell loss from tampering, and do not fail it.
    """
    from crest_proxy.audit.chain import verify
    from crest_proxy.audit.files import in_rotation_order

    if (source := _source(args)) is not None:
        return source
    if args.db:
        return _verify_db(args.db, args.chain)
    files = in_rotation_order(args.files)
    plural = "s" if len(files) != 1 else ""
    return _report(verify(files), f"{len(files)} file{plural}")


def _verify_db(dsn: str, only: str | None) -> int:
    from crest_proxy.audit.chain import verify_lines
    from crest_proxy.audit.dbread import chain_ids, chain_lines

    chains = [only] if only else chain_ids(dsn)
    if not chains:
        print("crest-proxy: the audit database holds no records", file=sys.stderr)
        return 2
    worst = 0
    for chain in chains:
        worst = max(worst, _report(verify_lines(chain_lines(dsn, chain)), f"chain {chain}"))
    return worst


def _report(result: Any, where: str) -> int:
    from crest_proxy.audit.chain import GENESIS

    for note in result.notes:
        print(note.describe())
    if result.first_break is not None:
        b = result.first_break
        print(f"BROKEN {b.file}:{b.line} (request_id {b.request_id or '?'}): {b.reason}", file=sys.stderr)
        return 1
    anchor = "the start of the log" if result.anchor in (None, GENESIS) else f"prev_hash {result.anchor}"
    gaps = f"; {result.lost} record(s) lost in explicit gaps" if result.lost else ""
    print(f"ok: {result.lines} lines in {where}, chained from {anchor}{gaps}")
    return 0


def run_query(args: argparse.Namespace) -> int:
    """Print matching records: a line each (or the raw JSON lines with ``--json``)."""
    query = _query(args)
    if isinstance(query, int):
        return query
    out = sys.stdout.buffer
    if not args.json:  # a table for people; --json stays pure JSON Lines for programs
        out.write("\t".join(_COLUMNS).encode("utf-8") + b"\n")
    for count, item in enumerate(_found(args, query), start=1):
        out.write((item.line if args.json else _row(item.record).encode("utf-8")) + b"\n")
        if args.limit is not None and count >= args.limit:
            break
    out.flush()
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """Print counts per tenant, action, direction, language and rule, and the blocked rate over time."""
    from crest_proxy.audit.query import summarise

    query = _query(args)
    if isinstance(query, int):
        return query
    summary = summarise(_found(args, query), bucket=args.bucket, top_rules=args.top)
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

    if (source := _source(args)) is not None:
        return source
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"crest-proxy: {exc}", file=sys.stderr)
        return 2
    return AuditQuery(args.tenant, args.action, args.direction, args.request_id, since)


def _found(args: argparse.Namespace, query: Any) -> Any:
    """Matching records from the database (``--db``) or the files."""
    if args.db:
        from crest_proxy.audit.dbread import find_in_db

        return find_in_db(args.db, query)
    from crest_proxy.audit.query import find

    return find(args.files, query)


def _source(args: argparse.Namespace) -> int | None:
    """Exit code 2 after saying what is wrong with FILE.../--db, or None when they make sense."""
    if bool(args.files) == bool(args.db):
        print("crest-proxy: give audit log files or --db DSN (one of them)", file=sys.stderr)
        return 2
    return None if args.db else _missing(args.files)


def _missing(files: list[Path]) -> int | None:
    absent = [str(f) for f in files if not Path(f).is_file()]
    if not absent:
        return None
    print(f"crest-proxy: no such file: {', '.join(absent)}", file=sys.stderr)
    return 2


_COLUMNS = ("ts", "request_id", "tenant", "direction", "action", "score", "rules", "language")


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


# --- ``serve``'s start-up check (its audit flags come from ServerSettings, ``cli.flags``) ---------------


def check_audit_destinations(settings: Any) -> None:
    """Fail before slow start-up work when another process holds the audit file or spool (ConfigError)."""
    from crest_proxy.audit.factory import spool_for
    from crest_proxy.audit.lock import AuditLogLocked, ensure_unlocked
    from crest_proxy.errors import ConfigError

    log = settings.audit_log if settings.audit_file else None
    held = [p for p in (log, spool_for(log, settings.audit_spool) if settings.audit_db else None) if p]
    try:
        if settings.audit_db:
            from crest_proxy.audit.database import import_psycopg

            import_psycopg()
        for path in held:
            ensure_unlocked(Path(path))
    except (AuditLogLocked, ImportError) as exc:
        raise ConfigError(f"crest-proxy: {exc}") from None

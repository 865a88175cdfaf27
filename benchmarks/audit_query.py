"""How fast ``crest-proxy audit query | stats | verify`` read a large audit log (default ~1 GB, generated).

Usage: ``python benchmarks/audit_query.py [--gigabytes 1.0] [--workdir /tmp/crest-audit-bench] [--keep]``.
The log is written with the proxy's own record serialisation and hash chain (100 tenants, 1 in 10
decisions blocked, a third with a rule, 1 in 20 keeping redacted content), timed, then deleted unless
``--keep`` (which also reuses a log kept before). Prints a markdown table; CPU seconds are the figure to
compare on a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from crest_proxy.audit.chain import GENESIS, link, verify
from crest_proxy.audit.query import AuditQuery, find, summarise
from crest_proxy.audit.sink import record_to_json
from crest_proxy.types import AuditRecord


def generate(path: Path, target_bytes: int) -> int:
    """Write chained records until ``path`` holds ``target_bytes``; returns the number of lines."""
    rng = random.Random(7)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    head, lines, size = GENESIS, 0, 0
    with path.open("w", encoding="ascii", buffering=1 << 20) as out:
        while size < target_bytes:
            linked = link(record_to_json(_record(rng, lines, start)), head)
            out.write(linked.text)
            head, lines, size = linked.hash, lines + 1, size + len(linked.text)
    return lines


def _record(rng: random.Random, n: int, start: datetime) -> AuditRecord:
    blocked = rng.random() < 0.1
    text = f"prompt {n} " + "lorem ipsum " * rng.randint(1, 30)
    return AuditRecord(
        ts=(start + timedelta(seconds=n * 0.5)).isoformat(timespec="milliseconds"),
        request_id=f"req_{n:032x}",
        tenant=f"tenant-{rng.randrange(100):02d}",
        direction=rng.choice(("inbound", "outbound")),
        endpoint="chat.completions",
        model="gpt-4o-mini",
        action="block" if blocked else rng.choice(("allow", "allow", "allow", "log", "redact")),
        score=round(rng.random(), 6),
        threshold=0.5,
        rules=("email",) if rng.random() < 0.33 else (),
        latency_ms=round(rng.uniform(2, 40), 3),
        upstream_status=200,
        text_sha256=hashlib.sha256(text.encode()).hexdigest(),
        texts=rng.randint(1, 4),
        windows=rng.randint(1, 6),
        language=rng.choice(("en", "en", "en", "sw", "th", "hi", "zh", "ar")),
        content=text if rng.random() < 0.05 else None,
    )


def timed(label: str, size: int, work: Callable[[], object]) -> str:
    """One table row: what was run, its result, wall and CPU seconds, MB/s of CPU time."""
    started, cpu = time.perf_counter(), time.process_time()
    result = work()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return f"| {label} | {result} | {seconds:.1f} | {cpu_seconds:.1f} | {size / cpu_seconds / 1e6:.0f} |"


def main() -> None:
    """Generate, time, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crest-audit-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the log (and reuse a kept one)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / "crest-audit.jsonl"
    try:
        started = time.perf_counter()
        if args.keep and path.is_file():  # a log kept by an earlier --keep run: time it again
            lines = sum(1 for _ in path.open("rb"))
        else:
            lines = generate(path, int(args.gigabytes * 1e9))
        size = path.stat().st_size
        took = time.perf_counter() - started
        print(f"{lines:,} lines, {size / 1e9:.2f} GB ready in {took:.0f} s", file=sys.stderr)
        since = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(seconds=(lines - 1000) * 0.5)
        queries = {
            "query --request-id (the last line)": AuditQuery(request_id=f"req_{lines - 1:032x}"),
            "query --tenant tenant-42 --action block": AuditQuery(tenant="tenant-42", action="block"),
            "query --since (the last 1,000 lines)": AuditQuery(since=since),
        }
        queries_tenant = AuditQuery(tenant="tenant-42")
        rows = [timed(label, size, lambda q=q: _count(find([path], q))) for label, q in queries.items()]
        for label, q in {
            "stats (every record parsed)": AuditQuery(),
            "stats --tenant tenant-42": queries_tenant,
        }.items():
            rows.append(timed(label, size, lambda q=q: summarise(find([path], q)).records))
        rows.append(timed("verify (hash chain)", size, lambda: "ok" if verify([path]).ok else "BROKEN"))
        print(f"{lines:,} lines, {size / 1e9:.2f} GB, one core")
        print("| command | matches | wall s | CPU s | MB per CPU s |\n|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


def _count(found: Iterable[object]) -> int:
    return sum(1 for _ in found)


if __name__ == "__main__":
    main()

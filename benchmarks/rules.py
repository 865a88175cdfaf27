#!/usr/bin/env python
"""What a regex rule costs on RE2: compile time, memory, matching time, and what it actually redacts.

    python benchmarks/rules.py [--chars 140000]

Why it exists: the shipped e-mail rule used to bound its repeats (``[\\w.+-]{1,64}@…{1,63}…{1,8}``), a
habit from backtracking engines. On RE2 a bounded repeat of a Unicode class is unrolled into that many
copies of the class: the program was ~130 MiB, matching ~100x slower, and because a search may start
anywhere, a local part longer than 64 characters kept its start unredacted. RE2 is linear without bounds.
Each pattern is compiled the way policies compile it (``crest_proxy.policy.rules``), in a fresh process,
so the memory figure is that pattern's own.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

PATTERNS = {
    "e-mail, bounded (shipped before)": r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}",
    "e-mail, unbounded (policies/default.yaml)": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    "openai-api-key": r"\bsk-[A-Za-z0-9_-]{20}",
}
LONG_LOCAL = "x" * 100  # a local part longer than RFC 5321's 64 characters


def sample(chars: int) -> str:
    """Mixed prose with one e-mail address (with a long local part) every ~230 characters."""
    unit = "word " * 20 + LONG_LOCAL + "@mail.example.co.uk " + "ünïcödé text "
    return (unit * (chars // len(unit) + 1))[:chars]


def measure(pattern: str, chars: int) -> str:
    """One table row's figures for ``pattern`` (run in its own process)."""
    from crest_proxy.policy.rules import compile_rule

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    rule = compile_rule(pattern)
    compile_ms = (time.perf_counter() - started) * 1000
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    text = sample(chars)
    started = time.perf_counter()
    found = [text[start:end] for start, end in rule.spans(text)]
    match_ms = (time.perf_counter() - started) * 1000
    first = found[0] if found else ""
    kept = len(LONG_LOCAL) - first.index("@") if "@" in first else "-"
    return f"{compile_ms:.0f} | {rss_mb:.0f} | {match_ms:.1f} | {len(found)} | {kept}"


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=140_000, help="length of the text matched")
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only is not None:
        print(measure(args.only, args.chars))
        return
    print(f"text: {args.chars:,} characters of mixed prose, one address per ~230 characters")
    print("| rule | compile ms | +max RSS MiB | match ms | matches | local-part characters left unredacted |")
    print("|---|---|---|---|---|---|")
    for name, pattern in PATTERNS.items():
        command = [sys.executable, __file__, "--only", pattern, "--chars", str(args.chars)]
        row = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
        print(f"| {name} | {row} |", flush=True)


if __name__ == "__main__":
    main()

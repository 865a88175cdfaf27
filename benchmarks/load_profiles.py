#!/usr/bin/env python
"""Where a change's pass-through time goes: two cProfile dumps of the load benchmark, per request.

    python benchmarks/load.py --baseline ../baseline --skip-crest --skip-litellm --skip-batching \
        --skip-soak --modes plain --concurrency 1 --duration 30 --rounds 2 --profile /tmp/prof
    python benchmarks/load_profiles.py /tmp/prof/crest-noop.prof /tmp/prof/crest-noop-baseline.prof

The dumps time the event loop thread's CPU (load_crest.py --profile), so waits for a core on a shared
machine do not count; cProfile itself inflates code that makes many small Python calls (2-3x here), so
read the ranking and the differences, not the absolute figures. Per request = divided by the number of
authenticated requests each server answered. Markdown tables go to stdout.
"""

from __future__ import annotations

import argparse
import pstats
from collections import Counter
from collections.abc import Callable
from pathlib import Path

# (file, line, function) -> (primitive calls, calls, own time, cumulative time, callers)
Stats = dict[tuple[str, int, str], tuple[int, int, float, float, dict[object, object]]]


def load(path: Path) -> tuple[Stats, int]:
    """A dump's raw stats and the number of requests it served (calls of the proxy's ``authenticate``)."""
    stats: Stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    requests = sum(v[1] for (f, _, fn), v in stats.items() if fn == "authenticate" and "crest_proxy" in f)
    if not requests:
        raise SystemExit(f"{path}: no crest_proxy authenticate() calls; is this a load benchmark dump?")
    return stats, requests


def module_of(filename: str) -> str:
    """crest_proxy/… for our modules, the package name for installed ones, the file name otherwise."""
    if "crest_proxy/" in filename:
        return "crest_proxy/" + filename.split("crest_proxy/")[-1]
    if "site-packages/" in filename:
        return filename.split("site-packages/")[-1].split("/")[0]
    return "builtins" if filename == "~" else Path(filename).name


def per_request(stats: Stats, requests: int, key: Callable[[str, str], str]) -> Counter[str]:
    """Own CPU time in µs per request, summed under ``key(file, function)``."""
    totals: Counter[str] = Counter()
    for (filename, _, function), (_, _, own, _, _) in stats.items():
        totals[key(filename, function)] += own / requests * 1e6
    return totals


def table(new: Counter[str], old: Counter[str], rows: int) -> str:
    """The ``rows`` largest differences, new minus old, in µs per request."""
    lines = ["| µs/request new − old | new | old | where |", "|---:|---:|---:|---|"]
    for name in sorted(set(new) | set(old), key=lambda n: -abs(new[n] - old[n]))[:rows]:
        lines.append(f"| {new[name] - old[name]:+.0f} | {new[name]:.0f} | {old[name]:.0f} | {name} |")
    return "\n".join(lines)


def main() -> int:
    """Print totals, the modules that changed most, and the heaviest functions of the new code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", type=Path, help="the changed code's dump (crest-noop.prof)")
    parser.add_argument("old", type=Path, help="the baseline's dump (crest-noop-baseline.prof)")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    (new, new_n), (old, old_n) = load(args.new), load(args.old)
    new_mod = per_request(new, new_n, lambda f, fn: module_of(f))
    old_mod = per_request(old, old_n, lambda f, fn: module_of(f))
    print(f"requests: new {new_n}, old {old_n}; event-loop CPU per request (profiled): "
          f"new {sum(new_mod.values()):.0f} µs, old {sum(old_mod.values()):.0f} µs\n")  # fmt: skip
    print("### By module\n\n" + table(new_mod, old_mod, args.rows) + "\n")
    new_fn = per_request(new, new_n, lambda f, fn: f"{module_of(f)}:{fn}")
    old_fn = per_request(old, old_n, lambda f, fn: f"{module_of(f)}:{fn}")
    print("### By function\n\n" + table(new_fn, old_fn, args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

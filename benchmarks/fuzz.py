#!/usr/bin/env python
"""Fuzz ``crest-proxy serve`` with schemathesis against OpenAI's OpenAPI description, then the hand-made
cases of issue 14; print the status counts (5xx must be 0) and a table of the cases.

    python benchmarks/fuzz.py                       # >= 10,000 schemathesis requests, then the cases
    python benchmarks/fuzz.py --requests 500 --no-cases

The proxy is the real CLI (uvicorn, connection limits, the generated trigger model on ONNX) in front of
``fuzz_upstream.py``. Schemathesis generates valid (positive) and invalid (negative) requests for the five
endpoints the proxy serves; every request carries a valid tenant key, so it reaches validation, screening
and the upstream. ``run(argv)`` is the entry point ``benchmarks/adversarial.py`` calls.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_cases  # noqa: E402
import load_fixtures as fx  # noqa: E402
from fuzz_upstream import make_app  # noqa: E402
from load_servers import free_port, rss_bytes, running  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "tests" / "data" / "openai-openapi" / "openapi.yaml"
PATHS = ["/chat/completions", "/completions", "/responses", "/embeddings", "/models"]
OTHER_KEY = "sk-bench-other-tenant-key"
# Share of the requests per (method path, generation mode): generating a chat or responses body from
# the spec costs 0.1–0.4 s, an embeddings or models request a few ms, so the cheap ones carry more.
WEIGHTS = {
    ("POST /chat/completions", "positive"): 14, ("POST /chat/completions", "negative"): 5,
    ("POST /completions", "positive"): 15, ("POST /completions", "negative"): 14,
    ("POST /embeddings", "positive"): 14, ("POST /embeddings", "negative"): 14,
    ("POST /responses", "positive"): 10, ("POST /responses", "negative"): 2,
    ("GET /models", "positive"): 4, ("GET /models", "negative"): 4,
    ("GET /chat/completions", "positive"): 2, ("GET /chat/completions", "negative"): 2,
}  # fmt: skip


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def upstream() -> Iterator[str]:
    """``fuzz_upstream``'s app under uvicorn on loopback, in a thread of this process."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def proxy(tmp: Path, workdir: Path) -> Iterator[Any]:
    """``crest-proxy serve`` (two tenants, short body and head deadlines) in front of the fake upstream."""
    with ExitStack() as stack:
        upstream_url = stack.enter_context(upstream())
        policies = fx.write_policy(tmp / "policies", upstream_url)
        other = (policies / "bench.yaml").read_text().replace("tenant: bench", "tenant: other")
        (policies / "other.yaml").write_text(other.replace("env:BENCH_PROXY_KEY", "env:OTHER_PROXY_KEY"))
        port = free_port()
        model = fx.trigger_model(workdir, progress)
        command = fx.crest_cli_command(port, policies, model, tmp / "audit.jsonl", workdir)
        argv = [*command.argv, "--body-timeout", "2", "--header-timeout", "2"]
        env = {**command.env, "OTHER_PROXY_KEY": OTHER_KEY}
        yield stack.enter_context(running("crest", argv, port=port, health=command.health, logs=tmp, env=env))


def fuzz(base_url: str, total: int, seed: int) -> dict[tuple[str, str], Counter[str]]:
    """Send about ``total`` schemathesis requests; the status counts per (operation, mode)."""
    import requests
    import schemathesis

    schema = schemathesis.openapi.from_path(str(SPEC)).include(path=PATHS)
    operations = {
        f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())
    }
    session = requests.Session()
    counts: dict[tuple[str, str], Counter[str]] = {}
    scale = total / sum(WEIGHTS.values())
    for (name, mode), weight in WEIGHTS.items():
        started = time.perf_counter()
        counts[(name, mode)] = _fuzz_one(
            operations[name], mode, round(weight * scale), base_url, session, seed
        )
        sent = sum(counts[(name, mode)].values())
        progress(f"{name} {mode}: {sent} requests in {time.perf_counter() - started:.0f} s")
    return counts


def _fuzz_one(operation: Any, mode: str, wanted: int, base_url: str, session: Any, seed: int) -> Counter[str]:
    import requests
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from schemathesis import GenerationMode

    counts: Counter[str] = Counter()
    auth = {"Authorization": f"Bearer {fx.PROXY_KEY}"}
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE

    @hypothesis_seed(seed)
    @settings(max_examples=wanted, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(operation.as_strategy(generation_mode=generation))
    def send(case: Any) -> None:
        if sum(counts.values()) >= wanted:
            return
        try:
            status = str(case.call(base_url=base_url, session=session, headers=auth, timeout=60).status_code)
        except requests.RequestException as exc:  # a reset or a hang: as bad as a 5xx
            status = f"error {type(exc).__name__}"
        counts[status] += 1

    send()
    return counts


def print_fuzz(counts: dict[tuple[str, str], Counter[str]], seconds: float) -> int:
    """The per-operation table and the totals; returns the number of 5xx answers and transport errors."""
    total: Counter[str] = Counter()
    print("| operation | mode | requests | statuses | 5xx |\n|---|---|---:|---|---:|")
    for (name, mode), counter in counts.items():
        total.update(counter)
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(counter.items()))
        print(f"| {name} | {mode} | {sum(counter.values())} | {statuses} | {_bad(counter)} |")
    bad = _bad(total)
    print(f"\n**{sum(total.values())} requests in {seconds:.0f} s; 5xx or transport errors: {bad}**")
    print("\n| status | count |\n|---|---:|")
    for status, n in sorted(total.items()):
        print(f"| {status} | {n} |")
    return bad


def _bad(counter: Counter[str]) -> int:
    return sum(n for s, n in counter.items() if s.startswith(("5", "error")))


def print_cases(rows: Sequence[fuzz_cases.Row]) -> int:
    """The hand-made cases' table; returns how many did not get what they must."""
    print("\n| case | must get | got | ok | s |\n|---|---|---|---|---:|")
    for row in rows:
        ok = "yes" if row.ok else "**NO**"
        print(f"| {row.case} | {row.expected} | {row.got} | {ok} | {row.seconds:.2f} |")
    return sum(not row.ok for row in rows)


def memory_note(server: Any, target: fuzz_cases.Target) -> None:
    """RSS of the proxy before and after a 5 MB answer (screened), a refused 20 MB one and a 2 MB event."""
    before = rss_bytes(server.pid)
    got = [fuzz_cases.post_case(target, case, stream) for case, stream in MEMORY_CASES]
    fuzz_cases.wait_until_serving(target)  # the 5 MB answer's screening may outlast its request
    time.sleep(12)  # past the proxy's memory trim interval (server/memory.py: 10 s)
    after = rss_bytes(server.pid)
    answers = ", ".join(f"{case} → {status}" for (case, _), status in zip(MEMORY_CASES, got, strict=True))
    print(f"\nproxy RSS: {before / 2**20:.0f} MiB before, {after / 2**20:.0f} MiB after ({answers})")


MEMORY_CASES = (("answer-5mb", False), ("answer-20mb", False), ("event-2mb", True))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 0 only when no 5xx/transport error occurred and every case passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_400, help="schemathesis requests (about)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--no-cases", action="store_true", help="skip the hand-made cases")
    parser.add_argument("--no-fuzz", action="store_true", help="only the hand-made cases")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/bench"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    failures = 0
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp, proxy(Path(tmp), args.workdir) as server:
        target = fuzz_cases.Target(server.url, fx.PROXY_KEY, OTHER_KEY)
        if not args.no_fuzz:
            started = time.perf_counter()
            counts = fuzz(f"{server.url}/v1", args.requests, args.seed)
            failures += print_fuzz(counts, time.perf_counter() - started)
        if not args.no_cases:
            failures += print_cases(fuzz_cases.run_cases(target))
            memory_note(server, target)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run())

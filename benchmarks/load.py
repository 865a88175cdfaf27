#!/usr/bin/env python
"""Load benchmark: crest-proxy vs the LiteLLM proxy vs direct, over a fake upstream on loopback.

    python benchmarks/load.py                   # full run (~10 min on 2 cores)
    python benchmarks/load.py --quick           # smoke run (~2 min)
    python benchmarks/load.py --skip-litellm --skip-batching --json out.json
    python benchmarks/load.py --baseline ../baseline --skip-crest --skip-litellm --skip-batching --skip-soak

Every server is its own process on 127.0.0.1: the fake upstream (load_upstream.py), ``crest-proxy serve``
with the tiny generated trigger model (ONNX fp32: ~4 ms CPU a request, so the proxy's own overhead
dominates), crest-proxy with a no-op classifier (load_crest.py --noop), and ``litellm --config`` (no
guardrails); with ``--baseline DIR``, also the no-op crest-proxy of another checkout (crest-noop-baseline,
by PYTHONPATH), so that a change's pass-through cost is a ratio measured in one run, not across runs.
Clients (load_clients.py, aiohttp) run in this process. "Added" latency is the percentile
through a proxy minus the same percentile sent straight to the upstream, at the same concurrency, in the
same run, measured in turns. Then micro-batching on vs off with a CREST-shaped random model (ONNX int8),
and a soak: many concurrent streams through ``crest-proxy serve`` with RSS sampled over time.
Progress goes to stderr; markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# benchmarks/ is a folder of scripts, not a package.
import load_fixtures as fx  # noqa: E402
import load_report as report  # noqa: E402
from load_clients import Load, Target  # noqa: E402
from load_runs import Cell, Soak, measure, soak  # noqa: E402
from load_servers import Server, free_port, load_average, running  # noqa: E402
from load_upstream import reply_text  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BASELINE = "crest-noop-baseline"
REGRESSION_LIMIT = 1.10  # issue 13: the pass-through overhead may grow by at most 10 %


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Flags; ``--quick`` shortens every phase for a smoke run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds per target, mode and concurrency")
    p.add_argument("--rounds", type=int, default=2, help="turns each target's time is split into")
    p.add_argument("--concurrency", default="1,32", help="comma-separated client counts")
    p.add_argument("--modes", default="plain,stream", help="comma-separated: plain (non-streamed), stream")
    p.add_argument("--tokens", type=int, default=60, help="pieces per answer (streamed: one frame each)")
    p.add_argument("--token-interval-ms", type=float, default=20.0, help="upstream pause between pieces")
    # 16: with a CREST-sized model on 2 shared cores, batching off already takes seconds per request at
    # 16 clients; many more would pass the 10 s classify timeout, and fail closed, in both configurations.
    p.add_argument("--batch-concurrency", type=int, default=16, help="clients in the micro-batching runs")
    p.add_argument("--batch-duration", type=float, default=40.0, help="seconds per batching configuration")
    p.add_argument("--soak-streams", type=int, default=200)
    p.add_argument("--soak-duration", type=float, default=60.0)
    p.add_argument("--quick", action="store_true", help="short smoke run of every phase")
    p.add_argument("--skip-comparison", action="store_true", help="no direct/crest/LiteLLM comparison")
    p.add_argument("--skip-litellm", action="store_true")
    p.add_argument("--skip-crest", action="store_true", help="no `crest-proxy serve` with the tiny model")
    p.add_argument(
        "--baseline", type=Path, default=None, metavar="DIR",
        help=f"also serve DIR's crest_proxy, no-op classifier ({BASELINE}), and compare crest-noop to it",
    )  # fmt: skip
    p.add_argument(
        "--profile", type=Path, default=None, metavar="DIR",
        help="run the no-op servers under cProfile: DIR/<target>.prof (their timings then include it)",
    )  # fmt: skip
    p.add_argument("--skip-batching", action="store_true")
    p.add_argument("--skip-soak", action="store_true")
    p.add_argument("--workdir", type=Path, default=REPO / ".cache" / "bench", help="cached generated models")
    p.add_argument("--json", type=Path, default=None, help="also save every figure here")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.concurrency = 4.0, 1, "8"
        args.batch_concurrency, args.batch_duration, args.soak_streams, args.soak_duration = 8, 8.0, 20, 10.0
    args.concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.concurrencies or min(args.concurrencies) < 1 or args.rounds < 1 or args.duration <= 0:
        p.error("--concurrency needs positive integers; --rounds and --duration must be positive")
    modes = {m.strip() for m in args.modes.split(",") if m.strip()}
    if not modes or not modes <= {"plain", "stream"}:
        p.error("--modes takes plain, stream or both, comma-separated")
    args.streams = [stream for name, stream in (("plain", False), ("stream", True)) if name in modes]
    if args.baseline and not (args.baseline / "crest_proxy" / "__init__.py").is_file():
        p.error(f"--baseline {args.baseline}: no crest_proxy/__init__.py there; give a checkout's root")
    return args


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def start(name: str, command: fx.Command, port: int, logs: Path) -> Iterator[Server]:
    """Start one server (progress shows how long it took to become ready); stopped on exit."""
    began = time.perf_counter()
    progress(f"starting {name} …")
    with running(name, command.argv, port=port, health=command.health, logs=logs, env=command.env) as server:
        progress(f"{name} ready in {time.perf_counter() - began:.1f} s (pid {server.pid})")
        yield server


def comparison(args: argparse.Namespace, tmp: Path, upstream: Server) -> list[Cell]:
    """direct vs crest-proxy (tiny model) vs crest-proxy (no model) [vs baseline] vs LiteLLM, both modes."""
    policies = fx.write_policy(tmp / "policies", upstream.url)
    with ExitStack() as stack:
        servers: dict[str, tuple[Server, str]] = {}
        if not args.skip_crest:
            model = fx.trigger_model(args.workdir, progress)
            port = free_port()
            command = fx.crest_cli_command(port, policies, model, tmp / "crest-audit.jsonl", args.workdir)
            servers["crest"] = (stack.enter_context(start("crest", command, port, tmp)), fx.PROXY_KEY)
        noops = [("crest-noop", None)] + ([(BASELINE, args.baseline)] if args.baseline else [])
        for name, source in noops:  # adjacent, so that each round measures them back to back
            server = stack.enter_context(noop_server(name, source, policies, args, tmp))
            servers[name] = (server, fx.PROXY_KEY)
        if not args.skip_litellm:
            port = free_port()
            command, master = fx.litellm_command(port, tmp, upstream.url)
            servers["litellm"] = (stack.enter_context(start("litellm", command, port, tmp)), master)
        targets = [Target("direct", upstream.url, fx.UPSTREAM_KEY)]
        targets += [Target(name, server.url, key) for name, (server, key) in servers.items()]
        pids = {name: server.pid for name, (server, _) in servers.items()}
        cells: list[Cell] = []
        for stream in args.streams:
            for clients in args.concurrencies:
                load = Load(stream, clients, args.duration, reply_text(args.tokens))
                progress(f"{'streaming' if stream else 'non-streaming'}, {clients} clients:")
                cells += asyncio.run(measure(targets, load, rounds=args.rounds, pids=pids, progress=progress))
        return cells


@contextmanager
def noop_server(
    name: str, source: Path | None, policies: Path, args: argparse.Namespace, tmp: Path
) -> Iterator[Server]:
    """crest-proxy with the no-op classifier, from the installed package or from checkout ``source``."""
    port = free_port()
    audit = tmp / f"{name}-audit.jsonl"
    profile = args.profile.resolve() / f"{name}.prof" if args.profile else None
    command = fx.crest_launcher_command(
        port, policies, audit, args.workdir, "--noop", source=source, profile=profile
    )
    with start(name, command, port, tmp) as server:
        served = fx.served_source(server.log)
        progress(f"{name} serves {served}")
        if source is not None and (served is None or not served.is_relative_to(source.resolve())):
            raise RuntimeError(f"{name} imported crest_proxy from {served}, not from {source}")
        yield server


def batching(args: argparse.Namespace, tmp: Path, upstream: Server) -> list[Cell]:
    """crest-proxy with a CREST-shaped random model (ONNX int8), micro-batching on (32) vs off (1)."""
    from classifier import ensure_model  # the classifier benchmark's cached checkpoint

    model = ensure_model(args.workdir, progress)
    policies = fx.write_policy(tmp / "policies", upstream.url)
    with ExitStack() as stack:
        targets, pids = [], {}
        for name, size in (("batch 32 (default)", 32), ("batch 1 (off)", 1)):
            port = free_port()
            extra = ("--model", str(model), "--backend", "onnx", "--max-batch-size", str(size))
            audit = tmp / f"batch{size}-audit.jsonl"
            command = fx.crest_launcher_command(port, policies, audit, args.workdir, *extra)
            server = stack.enter_context(start(name, command, port, tmp))
            targets.append(Target(name, server.url, fx.PROXY_KEY))
            pids[name] = server.pid
        load = Load(False, args.batch_concurrency, args.batch_duration, reply_text(args.tokens))
        progress(f"micro-batching, {args.batch_concurrency} clients:")
        return asyncio.run(measure(targets, load, rounds=args.rounds, pids=pids, progress=progress))


def soak_run(args: argparse.Namespace, tmp: Path, upstream: Server) -> Soak:
    """``--soak-streams`` concurrent streams for ``--soak-duration`` s through ``crest-proxy serve``."""
    policies = fx.write_policy(tmp / "policies", upstream.url)
    model = fx.trigger_model(args.workdir, progress)
    port = free_port()
    command = fx.crest_cli_command(port, policies, model, tmp / "soak-audit.jsonl", args.workdir)
    with start("crest (soak)", command, port, tmp) as server:
        load = Load(True, args.soak_streams, args.soak_duration, reply_text(args.tokens), timeout_s=300.0)
        progress(f"soak: {args.soak_streams} streams for {args.soak_duration:.0f} s")
        target = Target("crest", server.url, fx.PROXY_KEY)
        pids = {"pid": server.pid, "upstream_pid": upstream.pid}
        return asyncio.run(soak(target, load, **pids, every_s=1.0, progress=progress))


def header(args: argparse.Namespace, before: tuple[float, ...], after: tuple[float, ...]) -> str:
    """Machine, versions, load averages and the run's parameters."""
    versions = ", ".join(f"{p} {version(p)}" for p in ("crest-proxy", "litellm", "uvicorn", "aiohttp"))
    return "\n".join([
        f"- machine: {_cpu_model()}, {os.cpu_count()} cores, shared with other work; "
        f"Python {platform.python_version()}; {versions}",
        f"- load average (1/5/15 min) before: {_loads(before)}; after: {_loads(after)}",
        f"- fake upstream (aiohttp, own process): {args.tokens} pieces per answer; streams pace them "
        f"{args.token_interval_ms:g} ms apart (≈{args.tokens * args.token_interval_ms / 1000:.1f} s each)",
        f"- clients: aiohttp in the benchmark process, back to back; {args.duration:g} s per target per cell "
        f"in {args.rounds} turn(s), targets alternating; every answer's text is checked",
        "- crest = `crest-proxy serve` with the tiny generated trigger model (ONNX fp32, ~4 ms CPU a "
        "request); crest-noop = the same app with a no-op classifier; litellm = `litellm --config` "
        "(1 worker, no guardrails, master key); direct = straight to the fake upstream",
        *_baseline_line(args),
    ])  # fmt: skip


def _baseline_line(args: argparse.Namespace) -> list[str]:
    if not args.baseline:
        return []
    old, new = fx.checkout(args.baseline), fx.checkout(REPO)
    return [f"- {BASELINE} = crest-noop served from {old} by PYTHONPATH; crest-noop from {new}"]


def _loads(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def print_report(args: argparse.Namespace, cells: list[Cell], batch: list[Cell], soaked: Soak | None) -> None:
    """Every table, in markdown, on stdout."""
    proxies = ["crest", "crest-noop"]
    plain = [c for c in cells if not c.stream]
    streamed = [c for c in cells if c.stream]
    if plain:
        print("### Pass-through, non-streaming (latency in ms; added = minus direct's same percentile)\n")
        print(report.passthrough_table(plain) + "\n")
    if streamed:
        print("### Streaming (TTFT = first content piece; total = through [DONE]; ms)\n")
        print(report.streaming_table(streamed) + "\n")
    if cells and args.baseline:
        print(f"### Pass-through overhead, crest-noop ÷ {BASELINE} (target ≤ {REGRESSION_LIMIT:.2f})\n")
        print(report.regression_table(cells, "crest-noop", BASELINE, REGRESSION_LIMIT) + "\n")
    if cells and not args.skip_litellm:
        print("### Pass-through overhead, crest-proxy ÷ LiteLLM proxy (target ≤ 0.33)\n")
        print(report.ratio_table(cells, "litellm", proxies) + "\n")
    if batch:
        print(
            f"### Micro-batching, CREST-shaped random model (ONNX int8), {args.batch_concurrency} clients\n"
        )
        print(report.batching_table(batch) + "\n")
    if soaked is not None:
        print(f"### Soak: {soaked.streams} concurrent streams for {args.soak_duration:g} s, crest-proxy\n")
        print(report.soak_table(soaked) + "\n\n" + report.soak_lines(soaked) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run every phase (servers always stopped), print the tables, optionally save JSON."""
    args = parse_args(argv)
    began, before = time.perf_counter(), load_average()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crest-load-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        with start(
            "upstream", fx.upstream_command(port, args.tokens, args.token_interval_ms), port, tmp
        ) as up:
            cells = [] if args.skip_comparison else comparison(args, tmp, up)
            batch = [] if args.skip_batching else batching(args, tmp, up)
            soaked = None if args.skip_soak else soak_run(args, tmp, up)
    after = load_average()
    print("## Load benchmark\n\n" + header(args, before, after) + "\n")
    print_report(args, cells, batch, soaked)
    print(f"_total wall time {time.perf_counter() - began:.0f} s_")
    if args.json:
        doc: dict[str, Any] = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "load_average": {"before": before, "after": after},
            "cells": [asdict(c) for c in cells],
            "batching": [asdict(c) for c in batch],
            "soak": asdict(soaked) if soaked else None,
        }
        args.json.write_text(json.dumps(doc, indent=2))
        progress(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""1 vs 2 ``crest-proxy serve`` replicas sharing one MLServer classifier, against the in-process classifier.

    .ci/install-servers.sh mlserver            # MLServer in its own venv
    python benchmarks/scale.py [--seconds 20] [--clients 16] [--workdir /tmp/crest-scale]

The model is CREST-shaped (``build_random_model``: XLM-R base, 250k vocabulary, int8 ONNX), so every model
call costs what CREST-Base costs. Clients are spread evenly over the replicas (what a load balancer does).
Each request is screened twice (prompt in, completion out). Audit: every replica writes its JSONL file and,
where PostgreSQL's binaries are installed, to one shared throwaway PostgreSQL (``serve --audit-db``), as in
deploy/. Prints one table row per setup.

On one 2-core machine every process (clients, upstream, replicas, MLServer) shares the same two cores, so
this shows the overhead of the remote hop and that replicas share one model's batches correctly; it can
not show the horizontal gain, which needs the classifier on its own (GPU) node. See deploy/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import load_fixtures as fx  # noqa: E402
from load_clients import Load, Outcome, Target, drive, summarize  # noqa: E402
from load_servers import Server, free_port, running  # noqa: E402
from load_upstream import reply_text  # noqa: E402

TOKENS = 60  # the upstream's answer: ~60 words, screened outbound in one window


@dataclass(frozen=True)
class Setup:
    """One row: how many replicas, and whether they run the model themselves or call MLServer."""

    name: str
    replicas: int
    remote: bool


SETUPS = (
    Setup("in-process x1", 1, False),
    Setup("in-process x2", 2, False),
    Setup("MLServer x1", 1, True),
    Setup("MLServer x2", 2, True),
)


def prepare(workdir: Path) -> tuple[Path, Path]:
    """The CREST-shaped checkpoint and an MLServer repository of its int8 artifact (built once)."""
    from crest_proxy.classifier.artifact import ensure_artifact
    from crest_proxy.classifier.progress import PhaseReporter
    from crest_proxy.classifier.repository import RepositoryOptions, export_repository, graph_inputs
    from crest_proxy.classifier.settings import ClassifierSettings
    from crest_proxy.classifier.source import resolve_source
    from crest_proxy.classifier.synthetic import build_random_model

    model = workdir / "crest-base"
    if not (model / ".complete").exists():
        print(f"building a CREST-shaped model in {model} (minutes, once) …", file=sys.stderr)
        build_random_model(model)
        (model / ".complete").write_text("ok\n")
    source = resolve_source(ClassifierSettings(model=str(model)))
    artifact = ensure_artifact(
        source, quantize=True, cache_root=workdir / "artifacts", report=PhaseReporter(None)
    )
    repo = workdir / "mlserver-repo"
    shutil.rmtree(repo, ignore_errors=True)
    options = RepositoryOptions("mlserver", max_batch_size=32)
    export_repository(artifact, repo, options, num_labels=2, inputs=graph_inputs(artifact.model_file))
    return model, repo


@contextmanager
def mlserver(repo: Path, logs: Path) -> Iterator[Server]:
    """MLServer from .cache-venvs/mlserver on the repository."""
    venv = Path(__file__).resolve().parent.parent / ".cache-venvs" / "mlserver"
    if not (venv / ".installed").exists():
        sys.exit(f"MLServer is not installed in {venv}: run .ci/install-servers.sh mlserver")
    http = free_port()
    env = {"MLSERVER_HTTP_PORT": str(http), "MLSERVER_GRPC_PORT": str(free_port())}
    env["MLSERVER_METRICS_PORT"] = str(free_port())
    argv = [str(venv / "bin" / "mlserver"), "start", str(repo)]
    with running("mlserver", argv, port=http, health="/v2/models/crest/ready", logs=logs, env=env) as server:
        yield server


@contextmanager
def audit_database(enabled: bool) -> Iterator[str | None]:
    """A throwaway PostgreSQL (tests/postgres_server.py) and a fresh database's DSN; None if unavailable."""
    from tests.postgres_server import postgres_bin, started_server

    if not enabled or postgres_bin() is None:
        yield None
        return
    server, _ = started_server()
    try:
        yield server.create_database(f"scale_{int(time.time() * 1000)}")
    finally:
        server.remove()


def replica_command(
    port: int, policies: Path, model: Path, workdir: Path, classifier_url: str | None, index: int
) -> list[str]:
    """``crest-proxy serve`` on the int8 artifact, or with backend remote."""
    exe = shutil.which("crest-proxy", path=str(Path(sys.executable).parent)) or "crest-proxy"
    argv = [exe, "serve", "--policies", str(policies), "--host", "127.0.0.1", "--port", str(port)]
    argv += [
        "--model",
        str(model),
        "--audit-log",
        str(workdir / f"audit-{index}.jsonl"),
        "--log-level",
        "warning",
    ]
    # Generous limits: the table compares throughput; on a shared 2-core host one batch can take seconds.
    argv += ["--classify-timeout", "60"]
    if classifier_url is None:
        return [*argv, "--backend", "onnx"]
    return [*argv, "--backend", "remote", "--classifier-url", classifier_url, "--classifier-timeout", "60"]


def run_setup(
    setup: Setup, model: Path, repo: Path, workdir: Path, load: Load, postgres: bool
) -> list[Outcome]:
    """Start the upstream, the classifier server (remote setups) and the replicas; drive the load."""
    logs = workdir / "logs" / setup.name.replace(" ", "-")
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        up_port = free_port()
        up = fx.upstream_command(up_port, TOKENS, 0.0)
        upstream = stack.enter_context(
            running("upstream", up.argv, port=up_port, health=up.health, logs=logs)
        )
        policies = fx.write_policy(workdir / "policies", upstream.url)
        url = stack.enter_context(mlserver(repo, logs)).url if setup.remote else None
        dsn = stack.enter_context(audit_database(postgres))
        replicas = []
        for index in range(setup.replicas):
            port = free_port()
            argv = replica_command(port, policies, model, workdir, url, index)
            argv += ["--audit-db", dsn] if dsn else []
            env = fx.crest_env(workdir)
            name = f"replica-{index}"
            replicas.append(
                stack.enter_context(running(name, argv, port=port, health="/readyz", logs=logs, env=env))
            )
        return asyncio.run(spread(replicas, load))


async def spread(replicas: Sequence[Server], load: Load) -> list[Outcome]:
    """The clients, split evenly over the replicas, all running at once."""
    share = max(1, load.concurrency // len(replicas))
    each = Load(load.stream, share, load.duration_s, load.expected)
    targets = [Target(r.name, r.url, fx.PROXY_KEY) for r in replicas]
    results = await asyncio.gather(*(drive(t, each) for t in targets))
    return [o for outcomes in results for o in outcomes]


def main() -> None:
    """Run every setup and print the table."""
    parser = argparse.ArgumentParser(description="1 vs 2 replicas sharing one MLServer classifier")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crest-scale"))
    parser.add_argument("--only", nargs="*", default=None, help="setup names to run (default: all)")
    parser.add_argument("--no-postgres", action="store_true", help="JSONL audit only, no shared PostgreSQL")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model, repo = prepare(args.workdir)
    load = Load(stream=False, concurrency=args.clients, duration_s=args.seconds, expected=reply_text(TOKENS))
    print("| setup | replicas | clients | req/s | p50 ms | p95 ms | errors |\n|---|---|---|---|---|---|---|")
    for setup in SETUPS:
        if args.only and setup.name not in args.only:
            continue
        started = time.perf_counter()
        outcomes = run_setup(setup, model, repo, args.workdir, load, not args.no_postgres)
        summary = summarize(outcomes, args.seconds)
        print(
            f"| {setup.name} | {setup.replicas} | {args.clients} | {summary.throughput_rps:.1f} | "
            f"{summary.p50_ms:.0f} | {summary.p95_ms:.0f} | {summary.errors} {summary.error_kinds or ''} |",
            flush=True,
        )
        print(f"  ({setup.name}: {time.perf_counter() - started:.0f} s including start-up)", file=sys.stderr)


if __name__ == "__main__":
    main()

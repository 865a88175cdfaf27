"""What the load benchmark runs: generated models, the tenant policy, LiteLLM's config, server commands."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
PROXY_KEY = "sk-bench-proxy-key"  # the tenant's crest-proxy key (loopback only, throwaway)
UPSTREAM_KEY = "sk-bench-upstream-key"  # what the proxies present to the fake upstream
SOURCE_LINE = "crest_proxy from "  # how load_crest.py logs the package it serves


@dataclass(frozen=True)
class Command:
    """One server to start: its argv, extra environment, and the GET path that says it is ready."""

    argv: list[str]
    health: str
    env: dict[str, str] = field(default_factory=dict)


def trigger_model(workdir: Path, progress: Callable[[str], None]) -> Path:
    """The tiny generated trigger model (``crest-proxy model demo``'s), built once per workdir."""
    from crest_proxy.classifier.synthetic import build_trigger_model

    model_dir = workdir / "trigger-model"
    marker = model_dir / ".complete"
    if not marker.exists():
        progress(f"generating the tiny trigger model in {model_dir} …")
        build_trigger_model(model_dir)
        marker.write_text("ok\n")
    return model_dir


def write_policy(directory: Path, upstream_url: str) -> Path:
    """One tenant ("bench"): screen both directions (block at 0.5), two regex rules, keys from env."""
    directory.mkdir(parents=True, exist_ok=True)
    policy = {
        "tenant": "bench",
        "keys": ["env:BENCH_PROXY_KEY"],
        "upstream": {
            "provider": "openai",
            "base_url": f"{upstream_url}/v1",
            "api_key": "env:BENCH_UPSTREAM_KEY",
        },
        "inbound": {"action": "block", "threshold": 0.5},
        "outbound": {"action": "block", "threshold": 0.5},
        "rules": [
            {
                "name": "email",
                "pattern": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # policies/default.yaml's
                "action": "redact",
            },
            {"name": "openai-api-key", "pattern": r"\bsk-[A-Za-z0-9_-]{20}", "action": "block"},
        ],
    }
    (directory / "bench.yaml").write_text(yaml.safe_dump(policy))
    return directory


def crest_env(workdir: Path) -> dict[str, str]:
    """Environment of every crest-proxy process: keys, offline, the benchmarks' ONNX artifact cache."""
    return {
        "BENCH_PROXY_KEY": PROXY_KEY,
        "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
        "HF_HUB_OFFLINE": "1",
        "CREST_PROXY_CACHE": str(workdir / "artifacts"),
    }


def upstream_command(port: int, tokens: int, interval_ms: float) -> Command:
    """The fake upstream (benchmarks/load_upstream.py)."""
    argv = [sys.executable, str(BENCH / "load_upstream.py"), "--port", str(port), "--tokens", str(tokens)]
    return Command(argv + ["--interval-ms", str(interval_ms)], "/health")


def crest_cli_command(port: int, policies: Path, model: Path, audit: Path, workdir: Path) -> Command:
    """``crest-proxy serve`` with the tiny model on ONNX fp32: about the cheapest real model call there is.

    ONNX, not torch: measured on 2 shared cores, torch's eager forward costs ~10 ms CPU per request even for
    this 2-layer, 32-wide model (module-call overhead), ONNX ~4 ms, so ONNX leaves the proxy's own cost
    in view. The no-op classifier (``crest_launcher_command(..., "--noop")``) removes even that.
    """
    exe = shutil.which("crest-proxy", path=str(Path(sys.executable).parent)) or "crest-proxy"
    argv = [exe, "serve", "--policies", str(policies), "--host", "127.0.0.1", "--port", str(port),
            "--model", str(model), "--backend", "onnx", "--no-quantize", "--audit-log", str(audit),
            "--log-level", "warning"]  # fmt: skip
    return Command(argv, "/readyz", crest_env(workdir))


def crest_launcher_command(
    port: int,
    policies: Path,
    audit: Path,
    workdir: Path,
    *extra: str,
    source: Path | None = None,
    profile: Path | None = None,
) -> Command:
    """benchmarks/load_crest.py: the same app as ``serve`` with a batch size flag or a no-op classifier.

    ``source``: serve the crest_proxy of that checkout (by PYTHONPATH) instead of the installed one.
    ``profile``: serve under cProfile, whose stats are written there when the server stops (SIGTERM).
    """
    argv = [sys.executable, str(BENCH / "load_crest.py"), "--policies", str(policies), "--port", str(port),
            "--audit-log", str(audit), "--cache-dir", str(workdir / "artifacts"), *extra]  # fmt: skip
    argv += ["--profile", str(profile)] if profile else []
    env = crest_env(workdir) | ({"PYTHONPATH": str(source.resolve())} if source else {})
    return Command(argv, "/readyz", env)


def served_source(log: Path) -> Path | None:
    """The crest_proxy package a load_crest.py server imported, as its log's first line says."""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(SOURCE_LINE):
            return Path(line.removeprefix(SOURCE_LINE))
    return None


def checkout(directory: Path) -> str:
    """A source tree named for the report: its path and git commit, marked when it has uncommitted changes."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(directory), *argv], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "no git commit"
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{directory.resolve()} ({commit}{dirty})"


def litellm_command(port: int, directory: Path, upstream_url: str) -> tuple[Command, str]:
    """The LiteLLM proxy, one worker, no guardrails, no database; also returns its (random) master key.

    LiteLLM refuses to start without a master key; with one, clients present it, as crest's clients
    present their tenant key, so both proxies authenticate every request.
    """
    master = "sk-" + secrets.token_hex(24)
    config = {
        "model_list": [
            {
                "model_name": "bench-model",
                "litellm_params": {
                    "model": "openai/bench-model",
                    "api_base": f"{upstream_url}/v1",
                    "api_key": UPSTREAM_KEY,
                },  # fmt: skip
            }
        ],
    }
    path = directory / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    exe = shutil.which("litellm", path=str(Path(sys.executable).parent)) or "litellm"
    env = {
        "LITELLM_MASTER_KEY": master,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",  # also silences uvicorn's per-request access log, as crest's is silenced
    }
    argv = [exe, "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    return Command(argv, "/health/liveliness", env), master

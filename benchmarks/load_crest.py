#!/usr/bin/env python
"""crest-proxy for the load benchmark where ``crest-proxy serve`` has no flag: batch size, no-op classifier.

    python benchmarks/load_crest.py --policies DIR --port P --audit-log F --model DIR --max-batch-size 1
    python benchmarks/load_crest.py --policies DIR --port P --audit-log F --noop --profile out.prof

Builds the app exactly as ``crest_proxy.cli.serve.run`` does (``create_app`` + uvicorn with the tree's
connection-limits protocol where it has one, quiet logs), with
``ClassifierSettings.max_batch_size`` exposed, or with a classifier that answers "safe" at once (what the
proxy costs with no model at all). Run with ``PYTHONPATH=<older checkout>`` it serves that checkout's
crest_proxy (``load.py --baseline``): ``_app_parts`` finds the pieces in either package layout.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crest_proxy.types import Score


class NoopClassifier:
    """Scores every text 0.0 ("safe") without running a model: the proxy's own cost, nothing else."""

    async def classify(self, texts: Sequence[str]) -> list[Score]:
        """One safe score per text."""
        return [Score(score=0.0, label="safe") for _ in texts]


def _classifier(args: argparse.Namespace) -> Any:
    if args.noop:
        return NoopClassifier()
    from crest_proxy.classifier import ClassifierSettings, load_classifier

    settings = ClassifierSettings(
        model=args.model,
        backend=args.backend,
        quantize=not args.no_quantize,
        max_batch_size=args.max_batch_size,
        cache_dir=args.cache_dir,
        offline=True,
    )
    return load_classifier(settings)


# Where the launcher's four pieces live: today's layout (issue 12's packages), then the flat one before it,
# so that ``load.py --baseline`` can serve a checkout from before the restructuring with this same launcher.
_LAYOUTS: tuple[dict[str, str], ...] = (
    {"create_app": "crest_proxy.server.app", "configure_logging": "crest_proxy.server.logs",
     "ServerSettings": "crest_proxy.settings", "load_policies": "crest_proxy.policy.files"},
    {"create_app": "crest_proxy.app", "configure_logging": "crest_proxy.logs",
     "ServerSettings": "crest_proxy.config", "load_policies": "crest_proxy.config"},
)  # fmt: skip


def _app_parts(package: Path) -> dict[str, Any]:
    """create_app, configure_logging, ServerSettings and load_policies from ``package``'s layout."""
    layout = next((each for each in _LAYOUTS if _has(package, each["create_app"])), _LAYOUTS[-1])
    return {name: getattr(importlib.import_module(module), name) for name, module in layout.items()}


def _has(package: Path, module: str) -> bool:
    # The files, not importlib.util.find_spec: the venv's editable-install finder answers for names under
    # crest_proxy that the PYTHONPATH checkout lacks, with the main tree's modules.
    return package.joinpath(*module.split(".")[1:]).with_suffix(".py").is_file()


def _isolate(package: Path) -> None:
    """Serving a checkout on PYTHONPATH: drop the venv's editable-install finder, so that a module the
    checkout lacks fails to import instead of coming from the main tree."""
    entries = [Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package.resolve().parent in entries:
        sys.meta_path[:] = [
            f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable")
        ]


def _strays(package: Path) -> list[str]:
    """Loaded crest_proxy modules that come from outside ``package`` (the editable finder's leaks)."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.split(".")[0] == "crest_proxy"
        and getattr(module, "__file__", None)
        and not Path(module.__file__).resolve().is_relative_to(package.resolve())
    )


def _serve(app: Any, port: int, profile: Path | None, options: dict[str, Any]) -> None:
    """uvicorn until SIGTERM; with ``profile``, under cProfile, the stats written there on the way out.

    ``options``: the tree's own uvicorn options, as ``serve`` passes them (connection limits' protocol).
    """
    import uvicorn

    def run() -> None:
        quiet = {"log_level": "warning", "log_config": None, "access_log": False}
        uvicorn.run(app, host="127.0.0.1", port=port, **quiet, **options)

    if profile is None:
        run()
        return
    import cProfile

    # uvicorn re-raises SIGTERM after its graceful shutdown, with the handler it found: exit through Python.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    # The event loop thread's CPU time, not wall time: on a shared machine, waits for a core would count.
    with cProfile.Profile(time.thread_time) as profiler:
        try:
            run()
        finally:
            profiler.dump_stats(profile)


def main() -> int:
    """Parse flags, load, serve on 127.0.0.1 until terminated."""
    import crest_proxy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--audit-log", type=Path, required=True)
    parser.add_argument("--model", default=None, help="local model directory (not with --noop)")
    parser.add_argument("--backend", default="onnx", choices=["auto", "onnx", "torch", "bf16"])
    parser.add_argument("--no-quantize", action="store_true")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--cache-dir", type=Path, default=None, help="ONNX artifact cache")
    parser.add_argument("--noop", action="store_true", help="no model: every text scores 0.0")
    parser.add_argument("--profile", type=Path, default=None, help="serve under cProfile; stats here")
    args = parser.parse_args()
    if not args.noop and not args.model:
        parser.error("--model is required unless --noop")
    # load_fixtures.served_source reads this line: which checkout is served (load.py --baseline).
    package = Path(crest_proxy.__file__).parent
    print(f"crest_proxy from {package}", file=sys.stderr, flush=True)
    app = build_app(args.policies, args.port, args.audit_log, _classifier(args))
    options = _uvicorn_options(package, _settings(package, args.policies, args.port, args.audit_log))
    if strays := _strays(package):
        raise SystemExit(f"modules from outside {package}: {', '.join(strays)}")
    _serve(app, args.port, args.profile, options)
    return 0


def _uvicorn_options(package: Path, settings: Any) -> dict[str, Any]:
    """The uvicorn options ``serve`` adds in that tree (its connection-limits protocol), or none."""
    if not _has(package, "crest_proxy.server.connections"):
        return {}  # older layouts ran plain uvicorn
    from crest_proxy.server.connections import uvicorn_options

    return uvicorn_options(settings)


def _settings(package: Path, policies: Path, port: int, audit_log: Path) -> Any:
    """The tree's ``ServerSettings`` for this benchmark server."""
    return _app_parts(package)["ServerSettings"](
        host="127.0.0.1", port=port, policies_dir=policies, audit_log=audit_log
    )


def build_app(policies: Path, port: int, audit_log: Path, classifier: Any, transport: Any = None) -> Any:
    """The proxy app of the crest_proxy on PYTHONPATH (either layout), quiet logs, these policies."""
    import crest_proxy

    package = Path(crest_proxy.__file__).parent
    _isolate(package)
    parts = _app_parts(package)
    parts["configure_logging"]("warning")
    settings = _settings(package, policies, port, audit_log)
    loaded = parts["load_policies"](policies)
    return parts["create_app"](settings, policies=loaded, classifier=classifier, transport=transport)


if __name__ == "__main__":
    raise SystemExit(main())

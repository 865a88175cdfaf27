#!/usr/bin/env python
"""crest-proxy for the load benchmark where ``crest-proxy serve`` has no flag: batch size, no-op classifier.

    python benchmarks/load_crest.py --policies DIR --port P --audit-log F --model DIR --max-batch-size 1
    python benchmarks/load_crest.py --policies DIR --port P --audit-log F --noop

Builds the app exactly as ``crest_proxy.cli.serve.run`` does (``create_app`` + uvicorn, quiet logs), with
``ClassifierSettings.max_batch_size`` exposed, or with a classifier that answers "safe" at once (what the
proxy costs with no model at all).
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    """Parse flags, load, serve on 127.0.0.1 until terminated."""
    import uvicorn

    from crest_proxy.policy.files import load_policies
    from crest_proxy.server.app import create_app
    from crest_proxy.server.logs import configure_logging
    from crest_proxy.settings import ServerSettings

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
    args = parser.parse_args()
    if not args.noop and not args.model:
        parser.error("--model is required unless --noop")
    configure_logging("warning")
    settings = ServerSettings(
        host="127.0.0.1", port=args.port, policies_dir=args.policies, audit_log=args.audit_log
    )
    app = create_app(settings, policies=load_policies(args.policies), classifier=_classifier(args))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

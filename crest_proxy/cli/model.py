"""``crest-proxy model pull | quantize | info | demo``: get CREST onto this machine and inspect the cache."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crest_proxy.classifier.settings import BACKENDS, DEFAULT_MODEL, ClassifierSettings
from crest_proxy.errors import ModelNotAvailableError


def register(subparsers: Any) -> None:
    """Add ``model`` and its actions to the CLI."""
    parser = subparsers.add_parser("model", help="download, quantize and inspect the CREST model")
    actions = parser.add_subparsers(dest="model_action", metavar="ACTION", required=True)
    pull = actions.add_parser("pull", help="download the model into the Hugging Face cache")
    add_model_arguments(pull, backend=False)
    pull.set_defaults(func=pull_command)
    quantize = actions.add_parser("quantize", help="build the int8 ONNX artifact in the cache")
    add_model_arguments(quantize, backend=False)
    quantize.set_defaults(func=quantize_command)
    info = actions.add_parser("info", help="show what is cached for the model (no network)")
    add_model_arguments(info, backend=False)
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=info_command)
    demo = actions.add_parser(
        "demo", help="generate a small stand-in model for air-gapped trials (flags 'kaboom' and 'zarquon')"
    )
    demo.add_argument("directory", type=Path, help="where to write the model (reused if already there)")
    demo.set_defaults(func=demo_command)


def add_model_arguments(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    """The options that pick a model (and, with ``backend``, how to run it)."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"hub id or local directory ({DEFAULT_MODEL})")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit")
    parser.add_argument("--cache-dir", type=Path, default=None, help="artifact cache ($CREST_PROXY_CACHE)")
    if backend:
        parser.add_argument(
            "--backend",
            choices=BACKENDS,
            default="auto",
            help="auto (default): onnx int8 plus bf16 where native, each batch on the faster one",
        )
        parser.add_argument("--no-quantize", action="store_true", help="run fp32 instead of int8")
        parser.add_argument(
            "--device", choices=("cpu", "cuda", "auto"), default="auto", help="torch and bf16 backends"
        )
        parser.add_argument("--threads", type=int, default=None, help="intra-op threads")


def settings_from_args(args: argparse.Namespace) -> ClassifierSettings:
    """ClassifierSettings from parsed ``add_model_arguments`` options."""
    return ClassifierSettings(
        model=args.model,
        revision=args.revision,
        cache_dir=args.cache_dir,
        backend=getattr(args, "backend", "auto"),
        quantize=not getattr(args, "no_quantize", False),
        device=getattr(args, "device", "auto"),
        threads=getattr(args, "threads", None),
    )


def say(message: str) -> None:
    """Progress and diagnostics go to stderr; results go to stdout."""
    print(message, file=sys.stderr, flush=True)


def pull_command(args: argparse.Namespace) -> int:
    """Download the model into the HF cache."""
    from crest_proxy.classifier.source import pull_model

    settings = settings_from_args(args)
    say(f"pull: downloading {settings.model} into the Hugging Face cache ...")
    try:
        source = pull_model(settings)
    except ModelNotAvailableError as exc:
        say(str(exc))
        return 1
    print(f"{source.model}\t{source.revision}\t{source.path}")
    return 0


def quantize_command(args: argparse.Namespace) -> int:
    """Build (or find) the int8 ONNX artifact in the cache."""
    from crest_proxy.classifier.artifact import ensure_artifact
    from crest_proxy.classifier.catalog import directory_size
    from crest_proxy.classifier.progress import PhaseReporter
    from crest_proxy.classifier.settings import artifact_cache_dir
    from crest_proxy.classifier.source import resolve_source

    settings = settings_from_args(args)
    report = PhaseReporter(say)
    try:
        with report.phase("resolve", f"locating model {settings.model}"):
            source = resolve_source(settings)
        cache_root = artifact_cache_dir(settings)
        artifact = ensure_artifact(source, quantize=True, cache_root=cache_root, report=report)
    except ModelNotAvailableError as exc:
        say(str(exc))
        return 1
    state = "reused" if artifact.reused else "built"
    print(f"{artifact.path}\t{directory_size(artifact.path)} bytes\t{state}")
    return 0


def info_command(args: argparse.Namespace) -> int:
    """Print what is cached for the model."""
    from crest_proxy.classifier.catalog import describe_model

    report = describe_model(settings_from_args(args))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(_describe_lines(report.as_dict())))
    return 0 if report.path is not None else 1


def _describe_lines(report: dict[str, Any]) -> list[str]:
    labels = report["id2label"] or {}
    lines = [
        f"model:        {report['model']}",
        f"path:         {report['path'] or 'not on this machine'}",
        f"revision:     {report['revision'] or '-'}",
        f"labels:       {', '.join(f'{k}={v}' for k, v in labels.items()) or '-'}",
        f"unsafe label: {report['unsafe_label'] or '-'}",
        f"cache dir:    {report['cache_dir']}",
    ]
    for entry in report["artifacts"]:
        flag = "current" if entry["current"] else "stale"
        size = entry["size_bytes"]
        lines.append(f"artifact:     {entry['path']}  onnx {entry['precision']}  {size} bytes  {flag}")
        lines += _selection_lines(entry.get("selections") or [])
    if not report["artifacts"]:
        lines.append("artifact:     none (run `crest-proxy model quantize`)")
    if report["problem"]:
        lines.append(f"problem:      {report['problem']}")
    return lines


def _selection_lines(selections: list[dict[str, Any]]) -> list[str]:
    """What backend ``auto`` chose per batch shape, for each machine that timed this artifact."""
    from crest_proxy.classifier.autoselect import selection_from_dict
    from crest_proxy.classifier.routing import describe_table

    lines = []
    for data in selections:
        selection = selection_from_dict(data)
        lines.append(f"auto timing:  {selection.machine.describe()}: {selection.summary()}")
        lines += [f"                {row}" for row in describe_table(selection.table)]
    return lines


def demo_command(args: argparse.Namespace) -> int:
    """Write the generated trigger model (a real XLM-R classifier) to a directory, once."""
    from crest_proxy.classifier.synthetic import DEFAULT_TRIGGERS, build_trigger_model

    target: Path = args.directory
    if (target / "config.json").is_file() and (target / "synthetic.json").is_file():
        say(f"demo: {target} already holds the demo model")
    else:
        say(f"demo: generating a stand-in model in {target} (no download) ...")
        build_trigger_model(target)
    words = " and ".join(repr(w) for w in DEFAULT_TRIGGERS)
    say(f"demo: it scores texts containing {words} as unsafe and everything else as safe.")
    say(f"demo: serve it with `crest-proxy serve --model {target}`; it is NOT CREST (drop --model for that).")
    print(target)
    return 0

"""``crest-proxy model pull | quantize | info | demo | export-repository``: get CREST here, inspect, serve."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crest_proxy.classifier.settings import ClassifierSettings
from crest_proxy.cli.flags import add_flags, settings_from
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
    _register_export_repository(actions)


def _register_export_repository(actions: Any) -> None:
    export = actions.add_parser(
        "export-repository",
        help="write a Triton or MLServer model repository from the cached ONNX artifact",
        description="Write DIR/NAME for an Open Inference Protocol server; serve it and point "
        "`serve --backend remote --classifier-url ... --classifier-model NAME` at it.",
    )
    export.add_argument("directory", type=Path, metavar="DIR", help="the repository root")
    export.add_argument("--format", required=True, choices=("triton", "mlserver"))
    add_model_arguments(export, backend=False)
    export.add_argument(
        "--precision",
        choices=("int8", "fp32"),
        default=None,
        help="int8 (default for --instance cpu) or fp32 (default for gpu: int8 graphs run on CPU kernels)",
    )
    export.add_argument("--instance", choices=("cpu", "gpu"), default="cpu", help="Triton instance kind")
    export.add_argument("--name", default="crest", help="the model's name on the server (crest)")
    export.add_argument("--max-batch-size", type=int, default=32, help="rows per infer call (32)")
    export.set_defaults(func=export_repository_command)


# What ``model pull | quantize | info | export-repository`` need: which checkpoint, and where to cache it.
_PICK = ("model", "revision", "cache_dir")


def add_model_arguments(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    """The ``ClassifierSettings`` flags: those that pick a model, or (``backend``) all of them."""
    add_flags(parser, ClassifierSettings, only=None if backend else _PICK)


def settings_from_args(args: argparse.Namespace) -> ClassifierSettings:
    """ClassifierSettings from parsed ``add_model_arguments`` options."""
    return settings_from(ClassifierSettings, args)


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


def export_repository_command(args: argparse.Namespace) -> int:
    """Build (or reuse) the artifact in the requested precision and write the repository."""
    from crest_proxy.classifier.artifact import ensure_artifact
    from crest_proxy.classifier.progress import PhaseReporter
    from crest_proxy.classifier.repository import RepositoryOptions, export_repository, graph_inputs
    from crest_proxy.classifier.settings import artifact_cache_dir
    from crest_proxy.classifier.source import read_config, resolve_source

    settings = settings_from_args(args)
    precision = args.precision or ("fp32" if args.instance == "gpu" else "int8")
    options = RepositoryOptions(args.format, args.name, args.instance, args.max_batch_size)
    report = PhaseReporter(say)
    try:
        source = resolve_source(settings)
        # Only the number of outputs matters here: which one is unsafe is the proxy's business.
        labels = len(read_config(source.path).get("id2label") or {}) or 2
        cache_root = artifact_cache_dir(settings)
        artifact = ensure_artifact(source, quantize=precision == "int8", cache_root=cache_root, report=report)
        inputs = graph_inputs(artifact.model_file)
    except (ModelNotAvailableError, ValueError) as exc:
        say(str(exc))
        return 1
    except ModuleNotFoundError as exc:
        say(f"exporting needs {exc.name!r}: pip install 'crest-proxy[export]' (or reuse a cached artifact)")
        return 1
    repo = export_repository(artifact, args.directory, options, num_labels=labels, inputs=inputs)
    say(f"export-repository: {args.format} model {options.model_name!r} ({precision}) in {repo.model_dir}")
    say(f"export-repository: serve it with: {repo.serve_command}")
    print(repo.model_dir)
    return 0

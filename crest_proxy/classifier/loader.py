"""``load_classifier``: resolve the checkpoint, export or reuse the artifact, load a backend, warm it up."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crest_proxy.classifier.artifact import Artifact, artifact_dir, ensure_artifact, find_artifact, recipe_for
from crest_proxy.classifier.autoselect import (
    cached_selection,
    plan_tuning,
    report_selection,
    tune_backends,
)
from crest_proxy.classifier.engine import CrestClassifier, ModelInfo
from crest_proxy.classifier.labels import LabelMap, find_labels
from crest_proxy.classifier.machine import Machine, detect_machine, resident_bytes
from crest_proxy.classifier.packing import pad
from crest_proxy.classifier.progress import PhaseReporter, ProgressCallback
from crest_proxy.classifier.routing import RoutedRuntime, Selection
from crest_proxy.classifier.runtime import (
    LoadedRuntime,
    load_bf16_runtime,
    load_onnx_runtime,
    load_torch_runtime,
)
from crest_proxy.classifier.settings import ClassifierSettings, artifact_cache_dir
from crest_proxy.classifier.source import ModelSource, read_config, resolve_source
from crest_proxy.classifier.windows import TokenEncoder, encoder_from_transformers, load_encoder
from crest_proxy.errors import ModelNotAvailableError

log = logging.getLogger("crest_proxy.classifier")

# A cached start imports none of these; exporting a checkpoint and the torch backends need the `export` extra.
_EXPORT_MODULES = frozenset({"torch", "transformers", "optimum", "onnx"})
# RoBERTa-family models number positions after the padding index: two of their positions never hold tokens.
_OFFSET_POSITIONS = ("roberta", "camembert")


@dataclass(frozen=True)
class _Backend:
    loaded: LoadedRuntime
    encoder: TokenEncoder
    artifact: Artifact | None
    selection: Selection | None = None


def load_classifier(
    settings: ClassifierSettings, *, progress: ProgressCallback | None = None
) -> CrestClassifier:
    """Load CREST as ``settings`` say (blocking: may download, export and quantize on first run)."""
    report = PhaseReporter(progress)
    started = time.perf_counter()
    with report.phase("resolve", f"locating model {settings.model}"):
        source = resolve_source(settings)
    report.say(f"resolve: {source.path} (revision {source.revision})")
    config = read_config(source.path)
    labels = find_labels(
        config.get("id2label") or {}, model=settings.model, unsafe_label=settings.unsafe_label
    )
    max_tokens = window_limit(settings, config)
    if settings.backend == "remote":
        backend = _load_remote(source, settings, labels, report)
    else:
        backend = _load_backend(source, settings, labels.unsafe_index, report, max_tokens)
    info = _info(settings, source, labels, backend, time.perf_counter() - started, max_tokens)
    rss = f", RSS {info.rss_bytes / 2**20:.0f} MiB" if info.rss_bytes else ""
    report.say(f"ready: {info.backend} {info.precision} on {info.device} in {info.load_seconds:.2f} s{rss}")
    return CrestClassifier(
        info, runtime=backend.loaded.runtime, encoder=backend.encoder, labels=labels, settings=settings
    )


def window_limit(settings: ClassifierSettings, config: Mapping[str, Any]) -> int:
    """Tokens per window: the setting, capped by how many positions the model can embed."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return settings.window_tokens
    model_type = str(config.get("model_type", ""))
    if any(family in model_type for family in _OFFSET_POSITIONS):
        positions -= int(config.get("pad_token_id", 1)) + 1
    if positions < settings.window_tokens:
        log.warning("window_tokens=%d capped at %d (model positions)", settings.window_tokens, positions)
    return max(3, min(settings.window_tokens, positions))


def _load_backend(
    source: ModelSource,
    settings: ClassifierSettings,
    unsafe_index: int,
    report: PhaseReporter,
    max_tokens: int,
) -> _Backend:
    try:
        if settings.backend == "auto":
            backend = _load_auto(source, settings, unsafe_index, report, max_tokens)
        else:
            backend = _LOADERS[settings.backend](source, settings, unsafe_index, report)
        with report.phase("warm-up", "one forward pass"):
            specials = backend.encoder.specials
            backend.loaded.runtime.run(pad([[specials.bos_id, specials.eos_id]], specials.pad_id))
        return backend
    except ModelNotAvailableError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in _EXPORT_MODULES:
            raise ModelNotAvailableError(_needs_export_extra(settings, exc.name)) from exc
        raise ModelNotAvailableError(f"cannot load {settings.model!r}: {exc}") from exc
    except Exception as exc:  # export/load failures of any kind mean this model cannot run here
        raise ModelNotAvailableError(
            f"cannot load {settings.model!r} with the {settings.backend} backend: {type(exc).__name__}: {exc}"
        ) from exc


def _needs_export_extra(settings: ClassifierSettings, module: str) -> str:
    return (
        f"the {settings.backend} backend needs {module!r} to export or run {settings.model!r}, and it is not "
        "installed: pip install 'crest-proxy[export]' (torch, transformers, optimum), or serve an artifact "
        "already in the cache (`crest-proxy model quantize` on a machine with the extra)"
    )


def _load_remote(
    source: ModelSource, settings: ClassifierSettings, labels: LabelMap, report: PhaseReporter
) -> _Backend:
    """Tokenizer from the cached artifact (exported if missing); the forward pass on the OIP server."""
    from crest_proxy.classifier.remote import connect_remote

    artifact = _cached_artifact(source, settings, report)
    encoder = load_encoder(artifact.tokenizer_file, artifact.specials)
    with report.phase("connect", f"model {settings.model_name!r} on {settings.url}"):
        runtime = connect_remote(settings, num_labels=len(labels.id2label), unsafe_index=labels.unsafe_index)
    backend = _Backend(
        LoadedRuntime(runtime, device=str(settings.url), precision="remote"), encoder, artifact
    )
    with report.phase("warm-up", "one infer call"):
        specials = encoder.specials
        runtime.run(pad([[specials.bos_id, specials.eos_id]], specials.pad_id))
    return backend


def _cached_artifact(source: ModelSource, settings: ClassifierSettings, report: PhaseReporter) -> Artifact:
    """Any cached artifact of ``source`` (the tokenizer is the same in each precision), else a new one."""
    cache_root = artifact_cache_dir(settings)
    for quantize in (settings.quantize, not settings.quantize):
        found = find_artifact(artifact_dir(cache_root, recipe_for(source, quantize=quantize)))
        if found is not None:
            report.say(f"artifact: tokenizer from {found.path}")
            return found
    try:
        return ensure_artifact(source, quantize=settings.quantize, cache_root=cache_root, report=report)
    except ModuleNotFoundError as exc:
        raise ModelNotAvailableError(_needs_export_extra(settings, exc.name or "torch")) from exc


def _load_onnx(
    source: ModelSource, settings: ClassifierSettings, unsafe_index: int, report: PhaseReporter
) -> _Backend:
    artifact = ensure_artifact(
        source, quantize=settings.quantize, cache_root=artifact_cache_dir(settings), report=report
    )
    precision = artifact.recipe.precision
    if settings.device == "cuda" and settings.backend == "onnx":
        report.say("load: device 'cuda' applies to the torch backends; onnx runs on the CPU")
    with report.phase("load", f"onnxruntime session ({precision}) from {artifact.model_file}"):
        loaded = load_onnx_runtime(
            artifact.model_file, threads=settings.threads, unsafe_index=unsafe_index, precision=precision
        )
        encoder = load_encoder(artifact.tokenizer_file, artifact.specials)
    return _Backend(loaded=loaded, encoder=encoder, artifact=artifact)


def _load_torch(
    source: ModelSource, settings: ClassifierSettings, unsafe_index: int, report: PhaseReporter
) -> _Backend:
    with report.phase("load", f"torch model on {settings.device} (quantize={settings.quantize})"):
        loaded = load_torch_runtime(
            source.path,
            quantize=settings.quantize,
            device=settings.device,
            threads=settings.threads,
            unsafe_index=unsafe_index,
        )
        encoder = _fast_encoder(source)
    return _Backend(loaded=loaded, encoder=encoder, artifact=None)


def _load_bf16(
    source: ModelSource, settings: ClassifierSettings, unsafe_index: int, report: PhaseReporter
) -> _Backend:
    with report.phase("load", f"torch bf16 model on {settings.device}"):
        loaded = load_bf16_runtime(
            source.path, device=settings.device, threads=settings.threads, unsafe_index=unsafe_index
        )
        encoder = _fast_encoder(source)
    return _Backend(loaded=loaded, encoder=encoder, artifact=None)


def _fast_encoder(source: ModelSource) -> TokenEncoder:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source.path), use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotAvailableError(f"{source.path} has no fast tokenizer; windowing needs tokenizer.json")
    return encoder_from_transformers(tokenizer)


_LOADERS = {"onnx": _load_onnx, "torch": _load_torch, "bf16": _load_bf16}


def _load_auto(
    source: ModelSource,
    settings: ClassifierSettings,
    unsafe_index: int,
    report: PhaseReporter,
    max_tokens: int,
) -> _Backend:
    """onnx (always) and bf16 (where native), timed per batch shape; a backend that wins nothing is let go."""
    onnx = _load_onnx(source, settings, unsafe_index, report)
    machine = detect_machine(settings.threads, settings.device)
    if not machine.native_bf16:
        report.say(f"auto: onnx {onnx.loaded.precision} only (no native bf16 on {machine.describe()})")
        return onnx
    loaded = {f"onnx-{onnx.loaded.precision}": onnx.loaded}
    plan = plan_tuning(
        settings.max_batch_size,
        max_tokens,
        token_budget=settings.autotune_max_tokens,
        iterations=settings.autotune_iterations,
    )
    cache_dir = onnx.artifact.path if onnx.artifact else None
    selection = cached_selection(cache_dir, machine, plan, [*loaded, "bf16"])
    if selection is not None:
        report.say(f"auto: reusing the backend timing in {selection.cache_file}")
        if not selection.table.wins()["bf16"]:
            report.say("auto: bf16 won no batch shape in that timing; not loading it")
    if selection is None or selection.table.wins()["bf16"]:
        try:
            # Held only in ``loaded``: _route can then really free it when it wins nothing.
            loaded["bf16"] = _auto_bf16(source, settings, unsafe_index, report, machine)
        except Exception as exc:  # auto must never do worse than onnx alone
            report.say(f"auto: the bf16 candidate failed to load ({type(exc).__name__}: {exc}); onnx only")
            return onnx
    if selection is None:
        runtimes = {name: lr.runtime for name, lr in loaded.items()}
        selection = tune_backends(
            runtimes,
            plan=plan,
            machine=machine,
            specials=onnx.encoder.specials,
            cache_dir=cache_dir,
            report=report,
        )
    report_selection(selection, report)
    return _Backend(_route(loaded, selection, report), onnx.encoder, onnx.artifact, selection)


def _auto_bf16(
    source: ModelSource,
    settings: ClassifierSettings,
    unsafe_index: int,
    report: PhaseReporter,
    machine: Machine,
) -> LoadedRuntime:
    with report.phase("load", f"torch bf16 model on {'cuda' if machine.gpu else 'cpu'} (auto candidate)"):
        return load_bf16_runtime(
            source.path, device=settings.device, threads=settings.threads, unsafe_index=unsafe_index
        )


def _route(loaded: dict[str, LoadedRuntime], selection: Selection, report: PhaseReporter) -> LoadedRuntime:
    wins = selection.table.wins()
    for name in [n for n, count in wins.items() if count == 0 and n in loaded]:
        rss = resident_bytes()
        held = f" (RSS with both loaded: {rss / 2**20:.0f} MiB)" if rss else ""
        report.say(f"auto: {name} won no batch shape here; releasing it{held}")
        del loaded[name]
    gc.collect()  # the released model's tensors go back to the allocator now, not at some later collection
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    runtimes = {name: lr.runtime for name, lr in loaded.items()}
    devices = "+".join(sorted({lr.device for lr in loaded.values()}))
    precision = "+".join(lr.precision for lr in loaded.values())
    return LoadedRuntime(RoutedRuntime(runtimes, selection.table), device=devices, precision=precision)


def _info(
    settings: ClassifierSettings,
    source: ModelSource,
    labels: LabelMap,
    backend: _Backend,
    seconds: float,
    max_tokens: int,
) -> ModelInfo:
    artifact = backend.artifact
    return ModelInfo(
        model=settings.model,
        revision=source.revision,
        backend=settings.backend,
        precision=backend.loaded.precision,
        unsafe_label=labels.unsafe_label,
        id2label=dict(labels.id2label),
        artifact_path=artifact.path if artifact else None,
        artifact_reused=bool(artifact and artifact.reused),
        load_seconds=seconds,
        max_tokens=max_tokens,
        device=backend.loaded.device,
        selection=backend.selection,
        rss_bytes=resident_bytes(),
    )

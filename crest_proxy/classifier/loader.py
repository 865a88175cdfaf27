"""``load_classifier``: resolve the checkpoint, export or reuse the artifact, load a backend, warm it up."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crest_proxy.classifier.artifact import Artifact, ensure_artifact
from crest_proxy.classifier.engine import CrestClassifier, ModelInfo
from crest_proxy.classifier.labels import LabelMap, find_labels
from crest_proxy.classifier.packing import pad
from crest_proxy.classifier.progress import PhaseReporter, ProgressCallback
from crest_proxy.classifier.runtime import LoadedRuntime, load_onnx_runtime, load_torch_runtime
from crest_proxy.classifier.settings import ClassifierSettings, artifact_cache_dir
from crest_proxy.classifier.source import ModelSource, read_config, resolve_source
from crest_proxy.classifier.windows import TokenEncoder, encoder_from_transformers, load_encoder
from crest_proxy.errors import ModelNotAvailableError

log = logging.getLogger("crest_proxy.classifier")

# RoBERTa-family models number positions after the padding index: two of their positions never hold tokens.
_OFFSET_POSITIONS = ("roberta", "camembert")


@dataclass(frozen=True)
class _Backend:
    loaded: LoadedRuntime
    encoder: TokenEncoder
    artifact: Artifact | None


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
    labels = find_labels(config.get("id2label") or {}, model=settings.model)
    backend = _load_backend(source, settings, labels.unsafe_index, report)
    info = _info(
        settings, source, labels, backend, time.perf_counter() - started, window_limit(settings, config)
    )
    report.say(f"ready: {info.backend} {info.precision} on {info.device} in {info.load_seconds:.2f} s")
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
    source: ModelSource, settings: ClassifierSettings, unsafe_index: int, report: PhaseReporter
) -> _Backend:
    try:
        load = _load_onnx if settings.backend == "onnx" else _load_torch
        backend = load(source, settings, unsafe_index, report)
        with report.phase("warm-up", "one forward pass"):
            specials = backend.encoder.specials
            backend.loaded.runtime.run(pad([[specials.bos_id, specials.eos_id]], specials.pad_id))
        return backend
    except ModelNotAvailableError:
        raise
    except Exception as exc:  # export/load failures of any kind mean this model cannot run here
        raise ModelNotAvailableError(
            f"cannot load {settings.model!r} with the {settings.backend} backend: {type(exc).__name__}: {exc}"
        ) from exc


def _load_onnx(
    source: ModelSource, settings: ClassifierSettings, unsafe_index: int, report: PhaseReporter
) -> _Backend:
    artifact = ensure_artifact(
        source, quantize=settings.quantize, cache_root=artifact_cache_dir(settings), report=report
    )
    precision = artifact.recipe.precision
    if settings.device != "cpu":
        report.say(f"load: device {settings.device!r} applies to the torch backend; onnx runs on the CPU")
    with report.phase("load", f"onnxruntime session ({precision}) from {artifact.model_file}"):
        loaded = load_onnx_runtime(
            artifact.model_file, threads=settings.threads, unsafe_index=unsafe_index, precision=precision
        )
        encoder = load_encoder(artifact.tokenizer_file, artifact.specials)
    return _Backend(loaded=loaded, encoder=encoder, artifact=artifact)


def _load_torch(
    source: ModelSource, settings: ClassifierSettings, unsafe_index: int, report: PhaseReporter
) -> _Backend:
    from transformers import AutoTokenizer

    with report.phase("load", f"torch model on {settings.device} (quantize={settings.quantize})"):
        loaded = load_torch_runtime(
            source.path,
            quantize=settings.quantize,
            device=settings.device,
            threads=settings.threads,
            unsafe_index=unsafe_index,
        )
        tokenizer = AutoTokenizer.from_pretrained(str(source.path), use_fast=True)
        if not getattr(tokenizer, "is_fast", False):
            raise ModelNotAvailableError(
                f"{source.path} has no fast tokenizer; windowing needs tokenizer.json"
            )
    return _Backend(loaded=loaded, encoder=encoder_from_transformers(tokenizer), artifact=None)


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
    )

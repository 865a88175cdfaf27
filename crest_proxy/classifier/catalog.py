"""What is on this machine for a model: its checkpoint in the HF cache and its exported artifacts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crest_proxy.classifier.artifact import Artifact, list_artifacts, recipe_for
from crest_proxy.classifier.autoselect import saved_selections
from crest_proxy.classifier.labels import LabelMap, find_labels
from crest_proxy.classifier.routing import Selection
from crest_proxy.classifier.settings import ClassifierSettings, artifact_cache_dir
from crest_proxy.classifier.source import ModelSource, read_config, resolve_source
from crest_proxy.errors import ModelNotAvailableError


@dataclass(frozen=True)
class ArtifactEntry:
    """One cached export: where, how big, what precision, and whether this machine would reuse it."""

    path: Path
    precision: str
    preset: str | None
    revision: str
    size_bytes: int
    created: str
    current: bool
    selections: tuple[Selection, ...] = ()  # backend "auto" timings cached with this artifact, per machine


@dataclass(frozen=True)
class ModelReport:
    """The checkpoint (if found offline), its labels, and the artifacts cached for it."""

    model: str
    path: Path | None
    revision: str | None
    id2label: dict[int, str] | None
    unsafe_label: str | None
    problem: str | None
    cache_dir: Path
    artifacts: tuple[ArtifactEntry, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings)."""
        jsonable: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return jsonable


def describe_model(settings: ClassifierSettings) -> ModelReport:
    """Inspect what is cached for ``settings.model`` without downloading anything."""
    cache_root = artifact_cache_dir(settings)
    problem: str | None = None
    try:
        source: ModelSource | None = resolve_source(dataclasses.replace(settings, offline=True))
    except ModelNotAvailableError as exc:
        source, problem = None, str(exc)
    found = _labels(source, settings.unsafe_label)
    labels = found.labels
    entries = tuple(_entry(a, source) for a in list_artifacts(cache_root) if _belongs(a, settings, source))
    return ModelReport(
        model=settings.model,
        path=source.path if source else None,
        revision=source.revision if source else None,
        id2label=dict(labels.id2label) if labels else None,
        unsafe_label=labels.unsafe_label if labels else None,
        problem=problem or found.problem,
        cache_dir=cache_root,
        artifacts=entries,
    )


def directory_size(path: Path) -> int:
    """Total bytes of the regular files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass(frozen=True)
class _Labels:
    labels: LabelMap | None
    problem: str | None


def _labels(source: ModelSource | None, unsafe_label: str | None) -> _Labels:
    if source is None:
        return _Labels(None, None)
    try:
        id2label = read_config(source.path).get("id2label") or {}
        return _Labels(find_labels(id2label, model=source.model, unsafe_label=unsafe_label), None)
    except ModelNotAvailableError as exc:
        return _Labels(None, str(exc))


def _belongs(artifact: Artifact, settings: ClassifierSettings, source: ModelSource | None) -> bool:
    if source is not None and source.local:
        return artifact.recipe.revision == source.revision
    return artifact.recipe.model == settings.model


def _entry(artifact: Artifact, source: ModelSource | None) -> ArtifactEntry:
    recipe = artifact.recipe
    wanted = recipe_for(source, quantize=recipe.precision == "int8") if source else None
    return ArtifactEntry(
        path=artifact.path,
        precision=recipe.precision,
        preset=recipe.preset,
        revision=recipe.revision,
        size_bytes=directory_size(artifact.path),
        created=artifact.created,
        current=wanted is not None and wanted.key == recipe.key,
        selections=tuple(saved_selections(artifact.path)),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value

"""The on-disk cache of exported ONNX models: keyed, atomically written, reused across starts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from crest_proxy.classifier import onnx_export
from crest_proxy.classifier.progress import PhaseReporter
from crest_proxy.classifier.source import ModelSource
from crest_proxy.classifier.windows import SpecialTokens

# Bump when the artifact layout or export recipe changes: old entries then stop matching.
FORMAT_VERSION = 1
MANIFEST_FILE = "crest-artifact.json"
_VERSIONED = (("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"), ("optimum",), ("optimum-onnx",))


@dataclass(frozen=True)
class ArtifactRecipe:
    """Everything an exported artifact depends on; its hash names the cache entry."""

    model: str
    revision: str
    precision: str
    preset: str | None
    versions: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        """A short stable digest of the recipe."""
        blob = json.dumps([FORMAT_VERSION, asdict(self)], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]


@dataclass(frozen=True)
class Artifact:
    """An exported model directory in the cache, what built it, and whether this start reused it."""

    path: Path
    recipe: ArtifactRecipe
    specials: SpecialTokens
    created: str
    reused: bool

    @property
    def model_file(self) -> Path:
        """The ONNX graph."""
        return self.path / onnx_export.MODEL_FILE

    @property
    def tokenizer_file(self) -> Path:
        """The tokenizer, loadable by the ``tokenizers`` library alone."""
        return self.path / onnx_export.TOKENIZER_FILE


def recipe_for(source: ModelSource, *, quantize: bool) -> ArtifactRecipe:
    """The recipe for exporting ``source`` on this machine (CPU preset and library versions included)."""
    return ArtifactRecipe(
        # A local directory is identified by its content hash, wherever it lives.
        model="local" if source.local else source.model,
        revision=source.revision,
        precision="int8" if quantize else "fp32",
        preset=onnx_export.quantization_preset() if quantize else None,
        versions=_library_versions(),
    )


def artifact_dir(cache_root: Path, recipe: ArtifactRecipe) -> Path:
    """Where the artifact for ``recipe`` lives under ``cache_root``."""
    slug = recipe.model.replace("/", "--") if recipe.model != "local" else "local"
    return cache_root / "onnx" / f"{slug}-{recipe.precision}-{recipe.key}"


def find_artifact(path: Path) -> Artifact | None:
    """The complete artifact at ``path``, or None (the manifest is written last, so it marks completion)."""
    try:
        data = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        recipe = ArtifactRecipe(
            **{**data["recipe"], "versions": tuple(map(tuple, data["recipe"]["versions"]))}
        )
        specials = SpecialTokens(**data["specials"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (path / onnx_export.MODEL_FILE).is_file():
        return None
    return Artifact(path=path, recipe=recipe, specials=specials, created=data.get("created", ""), reused=True)


def ensure_artifact(
    source: ModelSource, *, quantize: bool, cache_root: Path, report: PhaseReporter
) -> Artifact:
    """Reuse the cached artifact for ``source``, or export (and quantize) it into the cache."""
    recipe = recipe_for(source, quantize=quantize)
    final = artifact_dir(cache_root, recipe)
    found = find_artifact(final)
    if found is not None:
        report.say(f"artifact: reusing {final}")
        return found
    return _build(source, recipe, final, report)


def list_artifacts(cache_root: Path) -> list[Artifact]:
    """Every complete artifact in the cache, newest first."""
    root = cache_root / "onnx"
    found = [find_artifact(p) for p in sorted(root.iterdir())] if root.is_dir() else []
    return sorted((a for a in found if a is not None), key=lambda a: a.created, reverse=True)


def _build(source: ModelSource, recipe: ArtifactRecipe, final: Path, report: PhaseReporter) -> Artifact:
    # Build in a sibling temp dir and rename: a crash mid-export leaves only a .tmp-* dir, never a
    # half-written entry that a later start would trust.
    temp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp.mkdir(parents=True)
    try:
        specials = onnx_export.export_onnx(
            source.path, temp, quantize=recipe.precision == "int8", preset=recipe.preset or "", report=report
        )
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _write_manifest(temp, recipe, specials, created, source)
        _publish(temp, final)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    report.say(f"artifact: saved {final}")
    return Artifact(path=final, recipe=recipe, specials=specials, created=created, reused=False)


def _write_manifest(
    directory: Path, recipe: ArtifactRecipe, specials: SpecialTokens, created: str, source: ModelSource
) -> None:
    data = {
        "format": FORMAT_VERSION,
        "recipe": asdict(recipe),
        "specials": asdict(specials),
        "created": created,
        "source_path": str(source.path),
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(data, indent=2), encoding="utf-8")


def _publish(temp: Path, final: Path) -> None:
    try:
        os.rename(temp, final)
    except OSError:
        # Another process published the same recipe first: keep theirs (ours is removed by the caller).
        if find_artifact(final) is None:
            raise


def _library_versions() -> tuple[tuple[str, str], ...]:
    return tuple((names[0], _dist_version(names)) for names in _VERSIONED)


def _dist_version(names: tuple[str, ...]) -> str:
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(name)
    return "missing"

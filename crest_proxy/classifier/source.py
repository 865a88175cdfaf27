"""Find a checkpoint on disk: a local directory, or a hub id resolved through the Hugging Face cache."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crest_proxy.classifier.settings import ClassifierSettings, hub_cache_dir, is_offline
from crest_proxy.errors import ModelNotAvailableError

log = logging.getLogger("crest_proxy.classifier")

# The probe is the only call that may hang on a black-holed network: snapshot_download's own
# repo_info call has no timeout in huggingface_hub 0.36, so we find out first, with HF's metadata timeout.
DEFAULT_HUB_TIMEOUT_S = 10.0
_OFFLINE_REASON = (
    "it is not in the Hugging Face cache, and offline mode (HF_HUB_OFFLINE) forbids downloading it"
)
# Weights for other frameworks and pre-built exports we never read.
_IGNORED = [
    "*.h5",
    "*.msgpack",
    "*.ot",
    "tf_model*",
    "flax_model*",
    "rust_model*",
    "onnx/*",
    "*.onnx",
    "openvino/*",
]


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint on local disk: what was asked for, where it is, and exactly which version it is."""

    model: str
    path: Path
    revision: str
    local: bool


def resolve_source(settings: ClassifierSettings) -> ModelSource:
    """Locate ``settings.model``: a directory, or a hub id from the HF cache (downloading unless offline)."""
    local = _local_candidate(settings.model)
    return local if local is not None else _hub_source(settings, require_hub=False)


def pull_model(settings: ClassifierSettings) -> ModelSource:
    """Download ``settings.model`` into the HF cache now; fails if the hub cannot be reached."""
    local = _local_candidate(settings.model)
    if local is not None:
        return local
    if is_offline(settings):
        raise ModelNotAvailableError(
            "`crest-proxy model pull` needs the network, but offline mode is on (HF_HUB_OFFLINE=1 or "
            "offline=True); run it without HF_HUB_OFFLINE on a machine with internet access"
        )
    return _hub_source(settings, require_hub=True)


def read_config(path: Path) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict."""
    try:
        return dict(json.loads((path / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ModelNotAvailableError(f"cannot read {path / 'config.json'}: {exc}") from exc


def content_hash(directory: Path) -> str:
    """A sha256 over the names and bytes of a directory's top-level files (hidden files excluded)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as fh:
            for block in iter(functools.partial(fh.read, 1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def not_available_message(model: str, reason: str) -> str:
    """The one message that says why the model is missing and how to get it onto this machine."""
    return (
        f"CREST model {model!r} is not available on this machine: {reason}.\n"
        f"To fix it, either:\n"
        f"  - on a machine with internet access run `crest-proxy model pull --model {model}`, copy its "
        f"Hugging Face cache (~/.cache/huggingface, or $HF_HOME) here and set HF_HOME to it "
        f"(searched: {hub_cache_dir()}); or\n"
        f"  - pass `--model /path/to/dir`: a directory holding the checkpoint "
        f"(config.json, weights, tokenizer files)."
    )


def _local_candidate(model: str) -> ModelSource | None:
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return _local_source(model, candidate)
    if _looks_like_path(model):
        raise ModelNotAvailableError(f"model directory {model!r} does not exist")
    return None


def _looks_like_path(model: str) -> bool:
    """Whether ``model`` names a directory rather than a hub id (``owner/name``): an absolute or relative
    path, more than one slash, or a first part that is a local folder (``models/demo`` before ``model demo``
    ran), so a typo is reported as a missing folder instead of a hub lookup."""
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        return True
    return "/" in model and Path(model.split("/", 1)[0]).is_dir()


def _local_source(model: str, path: Path) -> ModelSource:
    if not (path / "config.json").is_file():
        raise ModelNotAvailableError(f"model directory {str(path)!r} has no config.json")
    return ModelSource(model=model, path=path.resolve(), revision=content_hash(path), local=True)


@dataclass(frozen=True)
class _HubAccess:
    """Whether to answer from the cache only, the repo's file list (when online) and why offline."""

    offline: bool
    files: tuple[str, ...] = ()
    reason: str = ""


def _hub_source(settings: ClassifierSettings, *, require_hub: bool) -> ModelSource:
    access = _hub_access(settings, require_hub=require_hub)
    path = _snapshot(settings, access)
    return ModelSource(model=settings.model, path=path, revision=path.name, local=False)


def _hub_access(settings: ClassifierSettings, *, require_hub: bool) -> _HubAccess:
    if is_offline(settings) and not require_hub:
        return _HubAccess(offline=True, reason=_OFFLINE_REASON)
    try:
        return _HubAccess(offline=False, files=tuple(_probe_hub(settings.model, settings.revision)))
    except ModelNotAvailableError:
        raise
    except Exception as exc:  # any failure to reach the hub means: answer from the cache or fail
        if require_hub:
            raise ModelNotAvailableError(_unreachable(settings.model, exc)) from exc
        log.warning("Hugging Face Hub unreachable (%s); looking in the local cache", _brief(exc))
        return _HubAccess(
            offline=True, reason=f"the Hugging Face Hub is unreachable ({_brief(exc)}) and it is not cached"
        )


def _probe_hub(model: str, revision: str | None) -> list[str]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(model, revision=revision, timeout=hub_timeout())
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as exc:
        reason = f"the hub refused it ({_brief(exc)})"
        raise ModelNotAvailableError(not_available_message(model, reason)) from exc
    return [s.rfilename for s in info.siblings or []]


def _snapshot(settings: ClassifierSettings, access: _HubAccess) -> Path:
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            settings.model,
            revision=settings.revision,
            cache_dir=hub_cache_dir(),
            local_files_only=access.offline,
            ignore_patterns=_ignore_patterns(access.files),
            etag_timeout=hub_timeout(),
        )
    except Exception as exc:  # LocalEntryNotFoundError, HTTP and disk errors all mean "not available"
        detail = access.reason if access.offline else f"download failed ({_brief(exc)})"
        raise ModelNotAvailableError(not_available_message(settings.model, detail)) from exc
    return Path(path)


def hub_timeout() -> float:
    """Seconds to wait for hub metadata: $HF_HUB_ETAG_TIMEOUT, else 10."""
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or DEFAULT_HUB_TIMEOUT_S)
    except ValueError:
        return DEFAULT_HUB_TIMEOUT_S


def _ignore_patterns(files: Sequence[str]) -> list[str]:
    # Prefer safetensors: download pytorch_model.bin only when a repo has nothing else.
    has_safetensors = any(name.endswith(".safetensors") for name in files)
    return _IGNORED + (["*.bin", "*.pt", "*.pth"] if has_safetensors else [])


def _unreachable(model: str, exc: BaseException) -> str:
    return f"cannot download {model!r}: the Hugging Face Hub is unreachable ({_brief(exc)})"


def _brief(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text:
        return f"{name}: DNS lookup of the hub failed"
    if "timed out" in text.lower() or "Timeout" in name:
        return f"{name}: no answer within {hub_timeout():g} s"
    if "Max retries exceeded" in text or "Connection refused" in text:
        return f"{name}: cannot connect to the hub"
    first = text.strip().splitlines()
    return f"{name}: {first[0][:200]}" if first else name

"""``ClassifierSettings``: what model to load and how to run it, validated once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "repelloai/CREST-Base"
# auto: onnx int8 plus bf16 where this machine runs bf16 natively, each batch routed by measured speed.
BACKENDS = ("auto", "onnx", "torch", "bf16")
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class ClassifierSettings:
    """Which CREST checkpoint to load, on which backend, and how to batch and window its inputs."""

    model: str = DEFAULT_MODEL
    revision: str | None = None
    backend: str = "auto"
    quantize: bool = True
    device: str = "auto"
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 4096
    window_tokens: int = 512
    window_overlap: int = 64
    threads: int | None = None
    cache_dir: Path | None = None
    offline: bool | None = None
    # backend "auto" times its backends once per machine (then reuses the result cached with the artifact):
    # this many timed calls per backend and shape, on shapes of at most this many tokens per call.
    autotune_iterations: int = 2
    autotune_max_tokens: int = 1024

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("invalid ClassifierSettings: " + "; ".join(problems))


def _problems(s: ClassifierSettings) -> list[str]:
    checks = [
        (s.backend in BACKENDS, f"backend must be one of {BACKENDS}, got {s.backend!r}"),
        (s.device in DEVICES, f"device must be one of {DEVICES}, got {s.device!r}"),
        (s.max_batch_size >= 1, "max_batch_size must be >= 1"),
        (s.max_wait_ms >= 0, "max_wait_ms must be >= 0"),
        (s.max_queue >= 1, "max_queue must be >= 1"),
        (s.window_tokens >= 3, "window_tokens must be >= 3 (<s>, one token, </s>)"),
        (
            0 <= s.window_overlap < s.window_tokens - 2,
            "window_overlap must be >= 0 and smaller than window_tokens - 2",
        ),
        (s.threads is None or s.threads >= 1, "threads must be >= 1 or None"),
        (s.autotune_iterations >= 1, "autotune_iterations must be >= 1"),
        (s.autotune_max_tokens >= 16, "autotune_max_tokens must be >= 16"),
        (bool(s.model), "model must name a hub id or a directory"),
    ]
    return [message for ok, message in checks if not ok]


def artifact_cache_dir(settings: ClassifierSettings) -> Path:
    """Where exported/quantized artifacts live: settings, then $CREST_PROXY_CACHE, then ~/.cache."""
    if settings.cache_dir is not None:
        return Path(settings.cache_dir).expanduser()
    env = os.environ.get("CREST_PROXY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crest-proxy"


def is_offline(settings: ClassifierSettings) -> bool:
    """Whether to stay off the network: the explicit setting, else HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE."""
    if settings.offline is not None:
        return settings.offline
    # Read at call time: huggingface_hub.constants snapshots the environment when first imported.
    raw = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return raw.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, honouring HF_HUB_CACHE and HF_HOME as they are *now*."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"

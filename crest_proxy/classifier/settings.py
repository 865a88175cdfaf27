"""``ClassifierSettings``: what model to load and how to run it, validated once.

``serve`` and ``classify`` build a flag from every field (``crest_proxy.cli.flags``). A new setting is one
line, ``name: type = default  # help text``, or ``setting(default, help=..., flag=..., choices=...)`` from
``crest_proxy.settings`` when its flag needs more; validate it in ``_problems``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from crest_proxy.settings import setting

DEFAULT_MODEL = "repelloai/CREST-Base"
# auto: onnx int8 plus bf16 where this machine runs bf16 natively, each batch routed by measured speed.
# remote: an Open Inference Protocol (KServe v2) server runs the model; see docs/remote-classifier.md.
BACKENDS = ("auto", "onnx", "torch", "bf16", "remote")
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class ClassifierSettings:
    """Which CREST checkpoint to load, on which backend, and how to batch and window its inputs."""

    model: str = DEFAULT_MODEL  # hub id or local directory
    revision: str | None = None  # hub branch, tag or commit
    # auto: onnx int8 plus bf16 where native, each batch on the faster one
    backend: str = setting("auto", choices=BACKENDS)
    quantize: bool = True  # int8 (--no-quantize: fp32)
    device: str = setting("auto", choices=DEVICES, help="where the torch and bf16 backends run")
    max_batch_size: int = 32  # windows per model call
    # tokens per model call (one window always fits): bounds how long other tenants wait behind it
    # (int8 and bf16 run windows one by one anyway; raise it for a remote GPU server)
    max_batch_tokens: int = 512
    max_wait_ms: float = 2.0  # how long a batch waits for more texts
    max_queue: int = 4096  # texts waiting beyond this are refused (overloaded)
    window_tokens: int = 512  # tokens per classifier window
    window_overlap: int = 64  # tokens shared by consecutive windows of a long text
    threads: int | None = None  # intra-op threads (default: the runtime's choice)
    cache_dir: Path | None = None  # artifact cache (default: $CREST_PROXY_CACHE, else ~/.cache/crest-proxy)
    offline: bool | None = None  # stay off the network (default: HF_HUB_OFFLINE)
    # backend "auto" times its backends once per machine (then reuses the result cached with the artifact):
    # this many timed calls per backend and shape, on shapes of at most this many tokens per call.
    autotune_iterations: int = 2
    autotune_max_tokens: int = 1024
    # backend "remote": the server's base URL, the model's name there, and how long/often to try a call.
    url: str | None = setting(None, flag="--classifier-url", help="e.g. http://triton:8000")
    model_name: str = setting("crest", flag="--classifier-model", help="the model's name on that server")
    remote_timeout_s: float = setting(5.0, flag="--classifier-timeout", help="seconds per infer call")
    remote_retries: int = setting(2, flag="--classifier-retries", help="retries on connection errors")
    binary_tensors: bool = False  # Triton's binary tensor extension instead of JSON number arrays
    # Which output is unsafe, by name or index, when config.json's id2label says only LABEL_0/LABEL_1.
    unsafe_label: str | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("invalid ClassifierSettings: " + "; ".join(problems))


def _problems(s: ClassifierSettings) -> list[str]:
    checks = [
        (s.backend in BACKENDS, f"backend must be one of {BACKENDS}, got {s.backend!r}"),
        (s.device in DEVICES, f"device must be one of {DEVICES}, got {s.device!r}"),
        (s.max_batch_size >= 1, "max_batch_size must be >= 1"),
        (s.max_batch_tokens >= 1, "max_batch_tokens must be >= 1"),
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
        (
            s.backend != "remote" or str(s.url or "").startswith(("http://", "https://")),
            f"backend 'remote' needs url=http(s)://HOST:PORT of an inference server, got {s.url!r}",
        ),
        (bool(s.model_name) and "/" not in s.model_name, "model_name must be a non-empty name without '/'"),
        (s.remote_timeout_s > 0, "remote_timeout_s must be > 0"),
        (s.remote_retries >= 0, "remote_retries must be >= 0"),
        (s.unsafe_label is None or bool(s.unsafe_label.strip()), "unsafe_label must name a label or index"),
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

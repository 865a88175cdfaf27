"""What this machine offers the classifier (CPU, matmul features, threads, GPU), and its memory use."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from crest_proxy.classifier.onnx_export import read_cpu_flags

# The CPU features that decide which kernels the backends get: int8 dot products (VNNI), bf16 dot products
# (avx512_bf16 on Zen 4 / Cooper Lake, AMX tiles on Sapphire Rapids), ARM's bf16 and int8 matmul.
MATMUL_FEATURES = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimddp",
    "bf16",
    "i8mm",
)
_NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@dataclass(frozen=True)
class Machine:
    """The hardware a timing was taken on: its key decides whether a cached backend choice still applies."""

    cpu: str
    features: tuple[str, ...]
    threads: int
    gpu: str | None

    @property
    def native_bf16(self) -> bool:
        """Whether bf16 matmuls run in hardware here (a CUDA GPU, or bf16 dot-product/AMX instructions)."""
        return self.gpu is not None or bool(_NATIVE_BF16 & set(self.features))

    def describe(self) -> str:
        """One line for logs: CPU, features, threads and GPU."""
        gpu = f", GPU {self.gpu}" if self.gpu else ""
        features = " ".join(self.features) or "no matmul extensions"
        return f"{self.cpu} ({features}), {self.threads} threads{gpu}"


def detect_machine(threads: int | None, device: str) -> Machine:
    """This machine as the classifier uses it: ``threads`` intra-op threads, a GPU if ``device`` allows."""
    flags = read_cpu_flags()
    return Machine(
        cpu=cpu_model(),
        features=tuple(f for f in MATMUL_FEATURES if f in flags),
        threads=threads or usable_cores(),
        gpu=cuda_device_name() if device in ("auto", "cuda") else None,
    )


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in {"model name", "Model", "Hardware"} and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Device nodes a CUDA (NVIDIA) or ROCm (AMD) driver creates on Linux: without one, torch sees no GPU.
_GPU_NODES = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd")


def cuda_device_name() -> str | None:
    """The first CUDA GPU's name, or None (torch is imported only here, and only to ask)."""
    if platform.system() == "Linux" and not any(Path(node).exists() for node in _GPU_NODES):
        return None  # importing torch just to hear "no" costs seconds and ~300 MB of a cached start
    try:
        import torch
    except ImportError:  # torch is the `export` extra: a cached onnx start runs without it
        return None

    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


def resident_bytes(statm: Path = Path("/proc/self/statm")) -> int | None:
    """This process's resident set size now (None where /proc is unavailable)."""
    try:
        pages = int(statm.read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")

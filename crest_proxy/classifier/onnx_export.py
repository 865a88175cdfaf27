"""Export a checkpoint to ONNX with optimum and quantize it to dynamic int8, per channel."""

from __future__ import annotations

import platform
import shutil
import warnings
from pathlib import Path
from typing import Any

from crest_proxy.classifier.progress import PhaseReporter
from crest_proxy.classifier.windows import SpecialTokens, special_tokens_of
from crest_proxy.errors import ModelNotAvailableError

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags Linux reports (empty when /proc/cpuinfo is unreadable)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return frozenset(value.split())
    return frozenset()


def quantization_preset(machine: str | None = None, flags: frozenset[str] | None = None) -> str:
    """Which optimum int8 preset fits this CPU: arm64, avx512_vnni, avx512 or avx2."""
    machine = (machine or platform.machine()).lower()
    if machine in {"arm64", "aarch64"}:
        return "arm64"
    flags = read_cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def quantization_config(preset: str) -> Any:
    """optimum's dynamic (weights-only scales, activations at run time) per-channel config for ``preset``."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    # Per-channel: per-tensor int8 drifted badly on CREST's real weights.
    return getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=True)


def export_onnx(
    model_dir: Path, out_dir: Path, *, quantize: bool, preset: str, report: PhaseReporter
) -> SpecialTokens:
    """Write ``model.onnx`` (int8 or fp32) and ``tokenizer.json`` for ``model_dir`` into ``out_dir``."""
    fp32_dir = out_dir / "fp32"
    with report.phase("export", f"exporting {model_dir.name} to ONNX (fp32)"):
        _main_export(model_dir, fp32_dir)
    if quantize:
        with report.phase("quantize", f"dynamic int8 quantization, per channel ({preset})"):
            _quantize(fp32_dir / MODEL_FILE, out_dir / "int8", preset)
        (out_dir / "int8" / "model_quantized.onnx").rename(out_dir / MODEL_FILE)
    else:
        for file in fp32_dir.glob("model.onnx*"):  # the graph, plus external data for >2 GB models
            file.rename(out_dir / file.name)
    shutil.copy(model_dir / "config.json", out_dir / "config.json")
    shutil.rmtree(fp32_dir, ignore_errors=True)
    shutil.rmtree(out_dir / "int8", ignore_errors=True)
    return _save_tokenizer(model_dir, out_dir / TOKENIZER_FILE)


def _main_export(model_dir: Path, out: Path) -> None:
    from optimum.exporters.onnx import main_export

    # Tracing warns about constants baked into the graph for fixed-size helpers; they are expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # No validation pass: it runs torch and ORT again (slow on 2 cores); our tests check decisions.
        main_export(
            str(model_dir),
            output=out,
            task="text-classification",
            library_name="transformers",
            local_files_only=True,
            do_validation=False,
        )


def _quantize(model_file: Path, out: Path, preset: str) -> None:
    from optimum.onnxruntime import ORTQuantizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantizer = ORTQuantizer.from_pretrained(model_file.parent, file_name=model_file.name)
        quantizer.quantize(quantization_config(preset), save_dir=out)


def _save_tokenizer(model_dir: Path, target: Path) -> SpecialTokens:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotAvailableError(
            f"{model_dir} has no fast tokenizer; windowing needs one (tokenizer.json)"
        )
    # Saved on its own so that loading the artifact needs only the `tokenizers` library.
    tokenizer.backend_tokenizer.save(str(target))
    return special_tokens_of(tokenizer)

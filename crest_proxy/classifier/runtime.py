"""The backends: run one padded batch through the model and return P(unsafe) per row."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from crest_proxy.classifier.packing import PaddedBatch
from crest_proxy.errors import ModelNotAvailableError


class Runtime(Protocol):
    """A loaded model: scores a padded batch; called from one worker thread at a time."""

    def run(self, batch: PaddedBatch) -> np.ndarray:
        """P(unsafe) for every row of ``batch``."""
        ...


@dataclass(frozen=True)
class LoadedRuntime:
    """A runtime and what it actually runs on (the device and precision it ended up with)."""

    runtime: Runtime
    device: str
    precision: str


def unsafe_probability(logits: np.ndarray, unsafe_index: int) -> np.ndarray:
    """Softmax over the classes (in float64, stable), then the unsafe column."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs[:, unsafe_index]


def rows_alone(forward: Callable[[np.ndarray, np.ndarray], np.ndarray], batch: PaddedBatch) -> np.ndarray:
    """``forward`` on every row of ``batch`` alone, unpadded: its score cannot depend on its batch-mates.

    Dynamic int8 (ORT's and torch's) picks one activation scale per batch, padding included, so a crafted
    batch-mate moved another text's score from 0.99 to 0.007 (issue 14); bf16 GEMMs round differently with
    the batch's shape. Exact by construction and the ONNX artifact stays as it was; cost on CREST-Base int8
    (benchmarks/adversarial.py "int8 recipes", a noisy shared 2-core CPU): 0-35 % per call.
    """
    lengths = batch.attention_mask.sum(axis=1).tolist()
    return np.concatenate(
        [
            forward(batch.input_ids[i : i + 1, :n], batch.attention_mask[i : i + 1, :n])
            for i, n in enumerate(lengths)
        ]
    )


class _Forward:
    """A runtime that runs a padded batch through ``_forward``, row by row when ``_per_row`` says so."""

    _per_row: bool

    def run(self, batch: PaddedBatch) -> np.ndarray:
        """P(unsafe) for every row of ``batch``."""
        if self._per_row and batch.rows > 1:
            return rows_alone(self._forward, batch)
        return self._forward(batch.input_ids, batch.attention_mask)

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntime(_Forward):
    """An onnxruntime ``InferenceSession`` over an exported sequence-classification graph.

    ``per_row`` (int8): every window runs alone, unpadded (``rows_alone``); fp32 stays batched (it
    agrees with itself across batches bit for bit).
    """

    # A bare session rather than optimum's ORTModel: we pick threads and providers, and a cached start
    # imports neither torch nor transformers (measured: XLM-R-base int8 reloads in ~1.7 s on 2 cores).

    def __init__(self, session: Any, unsafe_index: int, *, per_row: bool = False) -> None:
        self._session = session
        self._unsafe_index = unsafe_index
        self._inputs = {i.name for i in session.get_inputs()}
        self._output = session.get_outputs()[0].name
        self._per_row = per_row

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._inputs:  # BERT-style graphs take segment ids; one segment here
            feed["token_type_ids"] = np.zeros_like(input_ids)
        (logits,) = self._session.run([self._output], {k: v for k, v in feed.items() if k in self._inputs})
        return unsafe_probability(logits, self._unsafe_index)


def load_onnx_runtime(
    model_file: Path, *, threads: int | None, unsafe_index: int, precision: str
) -> LoadedRuntime:
    """Open ``model_file`` in an onnxruntime session on the CPU with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One model call at a time (the worker thread); parallelism comes from intra-op threads only.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: the proxy's event loop (and, with backend auto, torch's
    # pool) share these cores. Measured on the shared 2-core EPYC, CREST-Base int8, interleaved calls:
    # spinning off cut median latency 10-30 % (1x64: 210 -> 190 ms, 8x64: 1437 -> 1027 ms), best-case
    # latency unchanged (1x16: 20 vs 21 ms). README "Speed" has the log.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    runtime = OnnxRuntime(session, unsafe_index, per_row=precision == "int8")
    return LoadedRuntime(runtime=runtime, device="cpu", precision=precision)


class TorchRuntime(_Forward):
    """A transformers sequence-classification model in eval mode on one device.

    ``per_row`` (int8, bf16, fp16): every window runs alone, unpadded (``rows_alone``; CREST-Base bf16
    batched vs alone: |Δ| up to 2e-3). fp32 stays batched: it agrees across batches within 1e-8.
    """

    def __init__(self, model: Any, device: str, unsafe_index: int, *, per_row: bool = False) -> None:
        self._model = model
        self._device = device
        self._unsafe_index = unsafe_index
        self._per_row = per_row

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            ids = torch.from_numpy(np.ascontiguousarray(input_ids)).to(self._device)
            mask = torch.from_numpy(np.ascontiguousarray(attention_mask)).to(self._device)
            logits = self._model(input_ids=ids, attention_mask=mask).logits
            return unsafe_probability(logits.float().cpu().numpy(), self._unsafe_index)


def load_torch_runtime(
    path: Path, *, quantize: bool, device: str, threads: int | None, unsafe_index: int
) -> LoadedRuntime:
    """Load the checkpoint with transformers: fp16 on CUDA, else int8 dynamic (or fp32) on the CPU."""
    import torch
    from transformers import AutoModelForSequenceClassification

    target = _torch_device(device)
    if threads:
        torch.set_num_threads(threads)  # process-wide in torch; only touched when asked to
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    if target == "cuda":
        model, precision = model.half().to("cuda"), "fp16"
    elif quantize:
        model, precision = _quantize_dynamic(model), "int8"
    else:
        precision = "fp32"
    runtime = TorchRuntime(model, target, unsafe_index, per_row=precision != "fp32")
    return LoadedRuntime(runtime=runtime, device=target, precision=precision)


def load_bf16_runtime(path: Path, *, device: str, threads: int | None, unsafe_index: int) -> LoadedRuntime:
    """Load the checkpoint with transformers in bfloat16 (weights and activations), on the GPU or CPU."""
    import torch
    from transformers import AutoModelForSequenceClassification

    target = _torch_device(device)
    if threads:
        torch.set_num_threads(threads)
    # Weights cast once (half the memory of fp32) rather than autocast, which re-casts fp32 weights on
    # every call. Attention stays transformers' default: SDPA wherever the architecture supports it.
    model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.bfloat16).eval()
    return LoadedRuntime(
        runtime=TorchRuntime(model.to(target), target, unsafe_index, per_row=True),
        device=target,
        precision="bf16",
    )


def _torch_device(device: str) -> str:
    import torch

    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise ModelNotAvailableError("device 'cuda' requested but torch sees no CUDA GPU; use device 'cpu'")
    return "cuda" if device == "cuda" or (device == "auto" and available) else "cpu"


def _quantize_dynamic(model: Any) -> Any:
    import torch

    # torch.ao.quantization warns that it moves to torchao; it is still the int8 path that ships with torch.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize = torch.ao.quantization.quantize_dynamic  # untyped in torch's stubs
        return quantize(model, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]

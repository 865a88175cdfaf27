"""What this CPU's matmul units reach: int8 (onnxruntime) and fp32/bf16 (torch) microbenchmarks.

The classifier benchmark divides model FLOPs by these rates to say how close each backend gets to the
hardware ("% of compute limit"). Large matrices in the shapes of xlm-roberta-base's linear layers
(tokens x 768 x 3072 and back) are what a big batch multiplies, so they bound the model from above.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# (M, K, N): a 2048-token batch through the FFN up/down projections and a square GEMM.
SHAPES = ((2048, 768, 3072), (2048, 3072, 768), (2048, 2048, 2048))


@dataclass(frozen=True)
class Peaks:
    """Measured matmul rates at the benchmark's thread count."""

    threads: int
    int8_tops: float  # MatMulInteger u8 x s8 -> s32, best shape
    dqmm_tops: float  # DynamicQuantizeMatMul f32 -> f32 (includes quantizing the activations)
    fp32_gflops: float  # torch.matmul float32
    bf16_gflops: float | None  # torch.matmul bfloat16, None where unsupported


def best_of(first: Peaks, second: Peaks) -> Peaks:
    """Each rate's better measurement: other processes can only slow a run down, never speed it up."""
    bf16 = [x for x in (first.bf16_gflops, second.bf16_gflops) if x is not None]
    return Peaks(
        threads=first.threads,
        int8_tops=max(first.int8_tops, second.int8_tops),
        dqmm_tops=max(first.dqmm_tops, second.dqmm_tops),
        fp32_gflops=max(first.fp32_gflops, second.fp32_gflops),
        bf16_gflops=max(bf16) if bf16 else None,
    )


def measure_peaks(threads: int, seconds: float = 1.0) -> Peaks:
    """Run every microbenchmark for ``seconds`` per shape and keep each best rate."""
    return Peaks(
        threads=threads,
        int8_tops=max(_ort_rate(_matmul_integer, s, threads, seconds) for s in SHAPES) / 1e12,
        dqmm_tops=max(_ort_rate(_dynamic_quantize_matmul, s, threads, seconds) for s in SHAPES) / 1e12,
        fp32_gflops=_torch_rate("float32", threads, seconds) / 1e9,
        bf16_gflops=_bf16_rate(threads, seconds),
    )


def _rate(step: Callable[[], Any], flops: float, seconds: float) -> float:
    step()  # warm-up: packs weights, allocates the arena
    runs, started = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - started < seconds:
        step()
        runs += 1
    return flops * runs / (time.perf_counter() - started)


def _ort_rate(
    build: Callable[..., tuple[Any, dict[str, Any]]],
    shape: tuple[int, int, int],
    threads: int,
    seconds: float,
) -> float:
    import onnxruntime as ort

    model, feeds = build(*shape)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    m, k, n = shape
    return _rate(lambda: session.run(None, feeds), 2.0 * m * k * n, seconds)


def _matmul_integer(m: int, k: int, n: int) -> tuple[Any, dict[str, Any]]:
    """A one-node graph: uint8 activations x int8 constant weights, the op dynamic quantization emits."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "B"),
        numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
        numpy_helper.from_array(np.array(0, np.int8), "b_zero"),
    ]
    node = helper.make_node("MatMulInteger", ["A", "B", "a_zero", "b_zero"], ["Y"])
    graph = helper.make_graph(
        [node],
        "matmul_integer",
        [_io("A", TensorProto.UINT8, m, k)],
        [_io("Y", TensorProto.INT32, m, n)],
        inits,
    )
    feeds = {"A": rng.integers(0, 256, (m, k), dtype=np.uint8)}
    return _model(graph), feeds


def _dynamic_quantize_matmul(m: int, k: int, n: int) -> tuple[Any, dict[str, Any]]:
    """The fused com.microsoft op ORT's optimizer turns a dynamically quantized MatMul into."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "B"),
        numpy_helper.from_array(np.full((n,), 0.01, np.float32), "b_scale"),
        numpy_helper.from_array(np.zeros((n,), np.int8), "b_zero"),
    ]
    node = helper.make_node(
        "DynamicQuantizeMatMul", ["A", "B", "b_scale", "b_zero"], ["Y"], domain="com.microsoft"
    )
    graph = helper.make_graph(
        [node],
        "dynamic_quantize_matmul",
        [_io("A", TensorProto.FLOAT, m, k)],
        [_io("Y", TensorProto.FLOAT, m, n)],
        inits,
    )
    feeds = {"A": rng.standard_normal((m, k), dtype=np.float32)}
    return _model(graph), feeds


def _io(name: str, dtype: int, rows: int, cols: int) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, dtype, [rows, cols])


def _model(graph: Any) -> Any:
    from onnx import helper

    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9  # what onnxruntime >= 1.16 reads; onnx's newest IR may be ahead of it
    return model


def _torch_rate(dtype_name: str, threads: int, seconds: float, size: int = 2048) -> float:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dtype = getattr(torch, dtype_name)
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        return _rate(lambda: torch.matmul(a, b), 2.0 * size**3, seconds)
    finally:
        torch.set_num_threads(previous)


def _bf16_rate(threads: int, seconds: float) -> float | None:
    try:
        return _torch_rate("bfloat16", threads, seconds) / 1e9
    except RuntimeError:  # no bf16 GEMM kernel on this CPU/build
        return None

"""Serve a Triton repository written by ``export-repository --format triton`` with PyTriton (no Docker).

PyTriton (``pip install nvidia-pytriton onnxruntime``) bundles the real ``tritonserver``, but only its
Python backend: models are Python callables. This script reads the repository's ``config.pbtxt`` (parsed
as Triton's own ModelConfig protobuf) and serves ``1/model.onnx`` through an onnxruntime session inside
the callable, with the config's batch size and dynamic batching. The HTTP API is Triton's, so the proxy
talks to it exactly as to ``tritonserver --model-repository``. Run it in PyTriton's own environment::

    python serve_pytriton.py DIR [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
"""

from __future__ import annotations

import argparse
import logging
import os
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig
from tritonclient.grpc import model_config_pb2

log = logging.getLogger("crest-pytriton")
_TYPES = {"TYPE_INT64": np.int64, "TYPE_FP32": np.float32}


def read_config(model_dir: Path) -> Any:
    """``config.pbtxt`` as Triton's ModelConfig message (fails on anything Triton would reject)."""
    config = model_config_pb2.ModelConfig()
    text_format.Parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"), config)
    return config


def make_infer(model_file: Path, output: str) -> Any:
    """A batched PyTriton callable running the ONNX graph on the CPU."""
    session = ort.InferenceSession(str(model_file), providers=ort.get_available_providers())

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        rows, tokens = inputs["input_ids"].shape
        log.info("crest-onnx infer rows=%d tokens=%d", rows, tokens)
        (logits,) = session.run([output], {k: v.astype(np.int64) for k, v in inputs.items()})
        return {output: np.asarray(logits, dtype=np.float32)}

    return infer


def bind(triton: Any, model_dir: Path) -> None:
    """Bind the repository's model under its configured name."""
    config = read_config(model_dir)
    name = model_config_pb2.DataType.Name
    inputs = [Tensor(name=t.name, dtype=_TYPES[name(t.data_type)], shape=tuple(t.dims)) for t in config.input]
    outputs = [
        Tensor(name=t.name, dtype=_TYPES[name(t.data_type)], shape=tuple(t.dims)) for t in config.output
    ]
    delay = config.dynamic_batching.max_queue_delay_microseconds
    triton.bind(
        model_name=config.name,
        infer_func=make_infer(model_dir / "1" / "model.onnx", config.output[0].name),
        inputs=inputs,
        outputs=outputs,
        config=ModelConfig(
            max_batch_size=config.max_batch_size, batcher=DynamicBatcher(max_queue_delay_microseconds=delay)
        ),
        strict=True,
    )


def _use_this_libpython() -> None:
    """Make Triton's Python-backend stub load this interpreter's libpython, not the system's.

    The stub links ``libpython3.X.so`` dynamically; with a pyenv/conda Python the system copy (another
    patch release) would run this interpreter's stdlib and fail (seen: ``RLock._recursion_count``).
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")])
        )


def main() -> None:
    """Serve every model directory (one holding config.pbtxt) under the repository root."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _use_this_libpython()
    config = TritonConfig(http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port)
    with Triton(config=config) as triton:
        for model_dir in sorted(p.parent for p in args.repository.glob("*/config.pbtxt")):
            bind(triton, model_dir)
        triton.serve()


if __name__ == "__main__":
    main()

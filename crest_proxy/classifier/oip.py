"""The Open Inference Protocol (KServe v2) messages crest-proxy sends and reads, without any I/O.

Spec: https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol (REST/JSON), and
Triton's binary tensor extension (``Inference-Header-Content-Length``). The tensors are the ONNX artifact's:
``input_ids`` and ``attention_mask`` (INT64, [batch, tokens]) in, ``logits`` (FP32, [batch, labels]) out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crest_proxy.classifier.packing import PaddedBatch

REQUIRED_INPUTS = ("input_ids", "attention_mask")
OPTIONAL_INPUTS = ("token_type_ids",)  # BERT-style graphs; sent as zeros (one segment)
OUTPUT = "logits"
BINARY_HEADER = "Inference-Header-Content-Length"
_FLOATS = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


class ProtocolError(ValueError):
    """The server's answer does not fit the protocol or the model crest-proxy expects."""


@dataclass(frozen=True)
class Signature:
    """What the served model takes and gives, as validated against its metadata."""

    inputs: tuple[str, ...]
    output: str
    labels: int


@dataclass(frozen=True)
class Encoded:
    """An infer request body and the headers it needs."""

    body: bytes
    headers: Mapping[str, str]


def check_metadata(meta: Mapping[str, Any], *, num_labels: int) -> Signature:
    """Validate ``GET /v2/models/{name}``'s answer; raises ProtocolError listing every mismatch."""
    inputs = {t.get("name"): t for t in meta.get("inputs") or [] if isinstance(t, Mapping)}
    outputs = {t.get("name"): t for t in meta.get("outputs") or [] if isinstance(t, Mapping)}
    problems = [_tensor_problem(inputs.get(name), name, "INT64", None) for name in REQUIRED_INPUTS]
    problems += [
        _tensor_problem(inputs[name], name, "INT64", None) for name in OPTIONAL_INPUTS if name in inputs
    ]
    problems.append(_tensor_problem(outputs.get(OUTPUT), OUTPUT, "FP32", num_labels))
    unknown = sorted(set(inputs) - set(REQUIRED_INPUTS) - set(OPTIONAL_INPUTS), key=str)
    if unknown:
        problems.append(f"it also requires inputs crest-proxy does not have: {unknown}")
    found = [p for p in problems if p]
    if found:
        raise ProtocolError("; ".join(found))
    sent = REQUIRED_INPUTS + tuple(name for name in OPTIONAL_INPUTS if name in inputs)
    return Signature(inputs=sent, output=OUTPUT, labels=num_labels)


def _tensor_problem(tensor: Mapping[str, Any] | None, name: str, datatype: str, last: int | None) -> str:
    if tensor is None:
        return f"it has no {'output' if name == OUTPUT else 'input'} tensor {name!r}"
    shape = tensor.get("shape")
    if tensor.get("datatype") != datatype:
        return f"{name!r} is {tensor.get('datatype')}, expected {datatype}"
    if not isinstance(shape, list) or len(shape) != 2:
        return f"{name!r} has shape {shape}, expected 2 dimensions [batch, {'labels' if last else 'tokens'}]"
    if last is not None and shape[-1] not in (-1, last):
        return f"{name!r} has {shape[-1]} columns but the model's config.json has {last} labels"
    return ""


def encode_request(batch: PaddedBatch, signature: Signature, *, binary: bool) -> Encoded:
    """The infer request for ``batch`` as JSON number arrays, or with Triton's binary extension."""
    tensors = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "token_type_ids": np.zeros_like(batch.input_ids),
    }
    arrays = [(name, np.ascontiguousarray(tensors[name], dtype="<i8")) for name in signature.inputs]
    if not binary:
        inputs = [_json_input(name, array) for name, array in arrays]
        body = {"inputs": inputs, "outputs": [{"name": signature.output}]}
        return Encoded(json.dumps(body, separators=(",", ":")).encode(), {"Content-Type": "application/json"})
    return _binary_request(arrays, signature.output)


def _json_input(name: str, array: np.ndarray) -> dict[str, Any]:
    # Flat row-major data is allowed by the protocol and cheaper to build than nested lists.
    return {"name": name, "shape": list(array.shape), "datatype": "INT64", "data": array.ravel().tolist()}


def _binary_request(arrays: Sequence[tuple[str, np.ndarray]], output: str) -> Encoded:
    inputs = [
        {
            "name": name,
            "shape": list(array.shape),
            "datatype": "INT64",
            "parameters": {"binary_data_size": array.nbytes},
        }
        for name, array in arrays
    ]
    header = json.dumps(
        {"inputs": inputs, "outputs": [{"name": output, "parameters": {"binary_data": True}}]},
        separators=(",", ":"),
    ).encode()
    body = header + b"".join(array.tobytes() for _, array in arrays)
    headers = {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(header))}
    return Encoded(body, headers)


def decode_logits(body: bytes, headers: Mapping[str, str], signature: Signature, rows: int) -> np.ndarray:
    """The ``logits`` of an infer response as a float array of shape (rows, labels)."""
    split = headers.get(BINARY_HEADER.lower()) or headers.get(BINARY_HEADER)
    header_len = int(split) if split else len(body)
    try:
        answer = json.loads(body[:header_len])
    except ValueError as exc:
        raise ProtocolError(f"infer response is not JSON: {exc}") from exc
    outputs = [o for o in answer.get("outputs") or [] if isinstance(o, Mapping)]
    tensor = next((o for o in outputs if o.get("name") == signature.output), None)
    if tensor is None:
        raise ProtocolError(f"infer response has no {signature.output!r} output")
    dtype = _FLOATS.get(str(tensor.get("datatype")))
    if dtype is None:
        raise ProtocolError(f"{signature.output!r} came back as {tensor.get('datatype')}, expected FP32")
    values = _values(tensor, dtype, body, header_len, outputs)
    try:
        logits = values.astype(np.float64).reshape(rows, signature.labels)
    except ValueError as exc:
        raise ProtocolError(
            f"{signature.output!r} has shape {tensor.get('shape')}, expected [{rows}, {signature.labels}]"
        ) from exc
    if not np.isfinite(logits).all():
        raise ProtocolError(f"{signature.output!r} holds NaN or infinite values")
    return logits


def _values(
    tensor: Mapping[str, Any], dtype: Any, body: bytes, header_len: int, outputs: Sequence[Mapping[str, Any]]
) -> np.ndarray:
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is None:
        return np.asarray(tensor.get("data"), dtype=np.float64).ravel()
    # Binary outputs follow the JSON header in the order the outputs are listed.
    offset = header_len
    for other in outputs:
        if other is tensor:
            break
        offset += int((other.get("parameters") or {}).get("binary_data_size") or 0)
    return np.frombuffer(body[offset : offset + int(size)], dtype=np.dtype(dtype).newbyteorder("<"))

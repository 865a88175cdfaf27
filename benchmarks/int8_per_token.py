"""A benchmark candidate (issue 14), not shipped: per-token int8 activation scales in the ONNX graph.

Batch-independent like running int8 rows one by one, but measured slower than that on CREST-Base
(benchmarks/adversarial.py, "int8 recipes"), so crest-proxy runs int8 rows alone instead.

ORT's dynamic quantization inserts ``DynamicQuantizeLinear`` before every int8 MatMul. That op picks ONE
scale for the whole activation tensor: every row and every padding position of the batch. A batch-mate
with extreme activations therefore coarsens everyone's quantization (issue 14: a text scored 0.99 alone
and 0.007 beside a crafted neighbour). Here each ``DynamicQuantizeLinear`` is replaced by a symmetric
per-token quantizer (scale = max|x| / 127 over the hidden axis, zero point fixed at 128), so a token's
int8 values depend on that token alone. MatMuls of two activations (attention's Q·Kᵀ and P·V) stay fp32:
their second operand mixes tokens, so any int8 scale for it would mix rows and padding again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_ZERO_POINT = 128
_LEVELS = 127.0
# A token whose activations are all zero would divide by zero; any tiny positive scale maps it to 0.
_MIN_SCALE = 1e-12


def activation_matmuls(model_file: Path) -> list[str]:
    """Names of the MatMul nodes whose second operand is not a weight (attention's Q·Kᵀ and P·V)."""
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] not in constants]


def rewrite_per_token(model_file: Path) -> int:
    """Swap each ``DynamicQuantizeLinear`` in ``model_file`` for a per-token quantizer; returns how many."""
    import onnx

    model = onnx.load(str(model_file))
    graph = model.graph
    widths = _hidden_widths(graph)
    nodes: list[Any] = []
    token_scales: dict[str, str] = {}  # the op's scale output -> our per-token scale
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            tag = f"rowwise{len(token_scales)}"
            nodes.extend(_per_token_nodes(node, tag, widths[node.input[0]]))
            token_scales[node.output[1]] = f"{tag}/scale"
        else:
            nodes.append(node)
    if token_scales:
        graph.initializer.extend(_constants())
        del graph.node[:]
        graph.node.extend(_scaled_after(nodes, token_scales))
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, 21)  # blocked QuantizeLinear
        onnx.save(model, str(model_file))
    return len(token_scales)


def _scaled_after(nodes: list[Any], token_scales: dict[str, str]) -> list[Any]:
    """Apply each per-token scale to the MatMul's float output instead of inside the int8 product.

    The quantizer's graph multiplies ``Cast(MatMulInteger) * (a_scale * w_scale)``; ORT fuses that into
    ``MatMulIntegerToFloat``, whose ``a_scale`` must be a scalar: a per-token one computes wrong values
    (measured: the trigger model missed its trigger). So ``a_scale`` stays the scalar 1 and a ``Mul`` by
    the per-token scale follows the fused op (one cheap pass over the output).
    """
    from onnx import helper

    products = {
        n.output[0]: token_scales[i]
        for n in nodes
        if n.op_type == "Mul"
        for i in n.input
        if i in token_scales
    }
    out: list[Any] = []
    for node in nodes:
        out.append(node)
        scale = (
            next((products[i] for i in node.input if i in products), None) if node.op_type == "Mul" else None
        )
        if scale is not None:
            final = node.output[0]
            node.output[0] = f"{final}/before_token_scale"
            out.append(
                helper.make_node("Mul", [node.output[0], scale], [final], name=f"{node.name}/token_scale")
            )
    return out


def _constants() -> list[Any]:
    import numpy as np
    from onnx import numpy_helper

    values: dict[str, np.ndarray] = {
        "rowwise_axes": np.array([-1], dtype=np.int64),
        "rowwise_inv_levels": np.array(1.0 / _LEVELS, dtype=np.float32),
        "rowwise_min_scale": np.array(_MIN_SCALE, dtype=np.float32),
        "rowwise_zero": np.array(0.0, dtype=np.float32),
        "rowwise_shift": np.array(float(_ZERO_POINT), dtype=np.float32),
        "rowwise_zero_point": np.array(_ZERO_POINT, dtype=np.uint8),
    }
    return [numpy_helper.from_array(v, name) for name, v in values.items()]


def _per_token_nodes(node: Any, tag: str, width: int) -> list[Any]:
    """x -> (uint8 q, per-token scale [..., 1], zero point 128), under the original output names."""
    from onnx import TensorProto, helper

    (x,) = node.input
    quantized, scale, zero_point = node.output

    def t(name: str) -> str:
        return f"{tag}/{name}"

    make = helper.make_node
    return [
        make("Abs", [x], [t("abs")], name=t("Abs")),
        make("ReduceMax", [t("abs"), "rowwise_axes"], [t("max")], name=t("ReduceMax"), keepdims=1),
        make("Mul", [t("max"), "rowwise_inv_levels"], [t("raw_scale")], name=t("ScaleMul")),
        make("Max", [t("raw_scale"), "rowwise_min_scale"], [t("scale")], name=t("ScaleFloor")),
        # The blocked QuantizeLinear (opset 21) wants a zero point shaped like the scale: 128 per token.
        make("Mul", [t("scale"), "rowwise_zero"], [t("zeros")], name=t("ZeroMul")),
        make("Add", [t("zeros"), "rowwise_shift"], [t("shift")], name=t("ZeroAdd")),
        make("Cast", [t("shift")], [t("zp_block")], name=t("ZeroCast"), to=TensorProto.UINT8),
        make(
            "QuantizeLinear",
            [x, t("scale"), t("zp_block")],
            [quantized],
            name=t("Quantize"),
            axis=-1,
            block_size=width,
        ),
        make("Identity", ["rowwise_zero_point"], [zero_point], name=t("ZeroPoint")),
        # The op's own scale output becomes 1: the per-token scale is applied after the MatMul. A computed
        # 1 (m / m), not a constant: constant folding would hide the pattern ORT fuses into one int8 kernel.
        make("ReduceMax", [t("scale")], [t("overall")], name=t("Overall"), keepdims=0),
        make("Div", [t("overall"), t("overall")], [scale], name=t("UnitScale")),
    ]


def _hidden_widths(graph: Any) -> dict[str, int]:
    """The last-axis size of every tensor a MatMulInteger quantizes: the rows (K) of its int8 weight."""
    weights = {i.name: i.dims[0] for i in graph.initializer if len(i.dims) == 2}
    producers = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DynamicQuantizeLinear"}
    return {
        producers[n.input[0]]: weights[n.input[1]]
        for n in graph.node
        if n.op_type == "MatMulInteger" and n.input[0] in producers and n.input[1] in weights
    }


def per_token_graph(fp32_model: Path, out: Path, preset: str) -> Path:
    """Quantize ``fp32_model`` (attention MatMuls left fp32) and rewrite it to per-token scales."""
    import warnings

    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    exclude = activation_matmuls(fp32_model)
    config = getattr(AutoQuantizationConfig, preset)(
        is_static=False, per_channel=True, nodes_to_exclude=exclude
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantizer = ORTQuantizer.from_pretrained(fp32_model.parent, file_name=fp32_model.name)
        quantizer.quantize(config, save_dir=out)
    rewrite_per_token(out / "model_quantized.onnx")
    return out / "model_quantized.onnx"

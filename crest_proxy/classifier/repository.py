"""Write a ready-to-serve model repository (Triton or MLServer) from a cached ONNX artifact.

Triton: ``NAME/config.pbtxt`` (onnxruntime backend, dynamic batching, CPU or GPU instances) next to
``NAME/1/model.onnx``. MLServer: ``NAME/model-settings.json`` declaring the tensors (so the proxy can
validate them with ``GET /v2/models/NAME``), the graph, and ``crest_onnx_runtime.py`` (PyPI has no ONNX
runtime for MLServer 1.7), plus a server ``settings.json`` with ``parallel_workers: 0``: MLServer 1.7.1's
worker pool crashes under uvloop >= 0.21, and the proxy batches already.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from crest_proxy.classifier.artifact import Artifact
from crest_proxy.classifier.oip import OPTIONAL_INPUTS, OUTPUT, REQUIRED_INPUTS

FORMATS = ("triton", "mlserver")
INSTANCES = ("cpu", "gpu")
RUNTIME_MODULE = "crest_onnx_runtime"
PROVENANCE_FILE = "crest-repository.json"
PYTRITON_SCRIPT = "serve_pytriton.py"


@dataclass(frozen=True)
class RepositoryOptions:
    """What to write: for which server, under which model name, for which instances, how big a batch."""

    format: str
    model_name: str = "crest"
    instance: str = "cpu"
    max_batch_size: int = 32
    queue_delay_us: int = 2000

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.instance not in INSTANCES:
            raise ValueError(f"instance must be one of {INSTANCES}, got {self.instance!r}")
        if not self.model_name or "/" in self.model_name or self.max_batch_size < 1:
            raise ValueError("model_name must be a plain name and max_batch_size >= 1")


@dataclass(frozen=True)
class ExportedRepository:
    """Where the repository is, the model's directory in it, and the command that serves it."""

    root: Path
    model_dir: Path
    options: RepositoryOptions
    precision: str
    inputs: tuple[str, ...]

    @property
    def serve_command(self) -> str:
        """The shell command that starts the server on this repository."""
        if self.options.format == "mlserver":
            return f"mlserver start {self.root}"
        gpus = "--gpus=1 " if self.options.instance == "gpu" else ""
        return (
            f"docker run --rm {gpus}-p 8000:8000 -p 8002:8002 -v {self.root}:/models "
            "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models"
        )


def export_repository(
    artifact: Artifact, root: Path, options: RepositoryOptions, *, num_labels: int, inputs: tuple[str, ...]
) -> ExportedRepository:
    """Write the repository for ``artifact`` under ``root`` (the model's own directory is replaced)."""
    model_dir = root / options.model_name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    if options.format == "triton":
        _write_triton(artifact, model_dir, options, num_labels, inputs)
    else:
        _write_mlserver(artifact, root, model_dir, options, num_labels, inputs)
    precision = artifact.recipe.precision
    provenance = {"artifact": str(artifact.path), "recipe": artifact.recipe.key, "precision": precision}
    (model_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return ExportedRepository(root, model_dir, options, precision, inputs)


def graph_inputs(model_file: Path) -> tuple[str, ...]:
    """The input names the ONNX graph takes that crest-proxy sends, in the order it sends them."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    missing = [name for name in REQUIRED_INPUTS if name not in names]
    if missing:
        raise ValueError(
            f"{model_file} lacks inputs {missing}; it is not a CREST sequence-classification graph"
        )
    return REQUIRED_INPUTS + tuple(name for name in OPTIONAL_INPUTS if name in names)


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link costs no space (CREST-Base int8 is ~280 MB); across filesystems, copy.
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_triton(
    artifact: Artifact, model_dir: Path, options: RepositoryOptions, num_labels: int, inputs: tuple[str, ...]
) -> None:
    (model_dir / "1").mkdir()
    _link_or_copy(artifact.model_file, model_dir / "1" / "model.onnx")
    (model_dir / "config.pbtxt").write_text(triton_config(options, num_labels, inputs), encoding="utf-8")
    # The same repository also runs without Docker under PyTriton (Python-callable models only).
    script = resources.files("crest_proxy.classifier").joinpath("pytriton_serve.py").read_text("utf-8")
    (model_dir.parent / PYTRITON_SCRIPT).write_text(script, encoding="utf-8")


def triton_config(options: RepositoryOptions, num_labels: int, inputs: tuple[str, ...]) -> str:
    """Triton's model configuration (protobuf text) for CREST's graph."""
    kind = "KIND_GPU" if options.instance == "gpu" else "KIND_CPU"
    tensors = "\n".join(
        f'  {{ name: "{name}", data_type: TYPE_INT64, dims: [ -1 ] }}{"," if i < len(inputs) - 1 else ""}'
        for i, name in enumerate(inputs)
    )
    # dims exclude the batch dimension (max_batch_size > 0); [-1] is the window length.
    return f"""name: "{options.model_name}"
backend: "onnxruntime"
max_batch_size: {options.max_batch_size}
input [
{tensors}
]
output [
  {{ name: "{OUTPUT}", data_type: TYPE_FP32, dims: [ {num_labels} ] }}
]
# Each proxy replica already sends one padded batch per call; Triton adds cross-replica batching for
# calls of equal shape, waiting at most this long for company.
dynamic_batching {{
  max_queue_delay_microseconds: {options.queue_delay_us}
}}
instance_group [
  {{ count: 1, kind: {kind} }}
]
"""


def _write_mlserver(
    artifact: Artifact,
    root: Path,
    model_dir: Path,
    options: RepositoryOptions,
    num_labels: int,
    inputs: tuple[str, ...],
) -> None:
    _link_or_copy(artifact.model_file, model_dir / "model.onnx")
    runtime = resources.files("crest_proxy.classifier").joinpath("mlserver_runtime.py").read_text("utf-8")
    (model_dir / f"{RUNTIME_MODULE}.py").write_text(runtime, encoding="utf-8")
    settings = mlserver_model_settings(options, num_labels, inputs)
    (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    server = {"parallel_workers": 0, "load_models_at_startup": True}
    (root / "settings.json").write_text(json.dumps(server, indent=2) + "\n", encoding="utf-8")


def mlserver_model_settings(
    options: RepositoryOptions, num_labels: int, inputs: tuple[str, ...]
) -> dict[str, Any]:
    """``model-settings.json``: the runtime, the graph, and the tensors GET /v2/models/NAME reports."""
    return {
        "name": options.model_name,
        "implementation": f"{RUNTIME_MODULE}.CrestOnnxRuntime",
        "parameters": {"uri": "./model.onnx"},
        # No adaptive batching: windows of different lengths cannot be concatenated, and each proxy
        # replica already sends one padded batch per call.
        "max_batch_size": 0,
        "inputs": [{"name": name, "datatype": "INT64", "shape": [-1, -1]} for name in inputs],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, num_labels]}],
    }

"""An MLServer runtime that serves CREST's exported ONNX graph with onnxruntime (copied into repositories).

``crest-proxy model export-repository --format mlserver`` writes this file next to ``model-settings.json``;
it runs inside MLServer's own environment (``pip install mlserver onnxruntime``), never in the proxy's.
PyPI has no maintained ``mlserver-onnx`` runtime for MLServer 1.7, hence this one. It takes the tensors
crest-proxy sends (``input_ids``, ``attention_mask``, INT64 ``[batch, tokens]``) and returns ``logits``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

log = logging.getLogger("mlserver")
OUTPUT = "logits"


class CrestOnnxRuntime(MLModel):  # type: ignore[misc]
    """One onnxruntime session; each infer call runs one batch of padded windows."""

    async def load(self) -> bool:
        """Open the graph named by ``parameters.uri`` (relative to model-settings.json)."""
        path = await get_model_uri(self.settings)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep rather than spin: as in the proxy's own session (classifier/runtime.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(path, options, providers=ort.get_available_providers())
        self._inputs = {i.name for i in self._session.get_inputs()}
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Run the session on the request's tensors (off the event loop, so health checks still answer)."""
        feed = {i.name: np.asarray(NumpyCodec.decode_input(i), dtype=np.int64) for i in payload.inputs}
        if "token_type_ids" in self._inputs and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        feed = {name: value for name, value in feed.items() if name in self._inputs}
        rows, tokens = feed["input_ids"].shape
        # Server-side evidence of batching (tests read it): one line per infer call.
        log.info("crest-onnx infer rows=%d tokens=%d", rows, tokens)
        loop = asyncio.get_running_loop()
        (logits,) = await loop.run_in_executor(None, self._run, feed)
        output = NumpyCodec.encode_output(name=OUTPUT, payload=np.asarray(logits, dtype=np.float32))
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=[output])

    def _run(self, feed: dict[str, Any]) -> list[Any]:
        return list(self._session.run([OUTPUT], feed))

"""Backend ``remote`` against the real ``tritonserver`` that PyTriton bundles (JSON and binary tensors).

PyTriton's tritonserver has only the Python backend, so the exported repository's ``serve_pytriton.py``
parses ``config.pbtxt`` as Triton's ModelConfig and runs ``1/model.onnx`` with onnxruntime in the callable.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crest_proxy.classifier import CrestClassifier, load_classifier
from crest_proxy.classifier.artifact import Artifact
from crest_proxy.errors import ModelNotAvailableError
from tests.oip_servers import (
    RunningServer,
    fp32_artifact,
    local_fp32,
    remote_settings,
    require_server,
    started,
    write_repository,
)

TEXTS = ["hello", "kaboom here", "word " * 700 + "zarquon", "Как дела?", ""]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_server("triton")
    return tmp_path_factory.mktemp("triton")


@pytest.fixture(scope="module")
def artifact(work: Path, trigger_model_dir: Path) -> Artifact:
    return fp32_artifact(trigger_model_dir, work / "cache")


@pytest.fixture(scope="module")
def server(work: Path, artifact: Artifact) -> Iterator[RunningServer]:
    repo = write_repository("triton", artifact, work / "repo")
    with started("triton", repo, work / "triton.log") as running:
        yield running


@pytest.fixture(scope="module")
def local(trigger_model_dir: Path, work: Path, artifact: Artifact) -> Iterator[CrestClassifier]:
    with local_fp32(trigger_model_dir, work / "cache") as clf:
        yield clf


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_triton_scores_equal_in_process_scores(
    trigger_model_dir: Path, work: Path, server: RunningServer, local: CrestClassifier, binary: bool
) -> None:
    remote = load_classifier(
        remote_settings(trigger_model_dir, work / "cache", server, binary_tensors=binary)
    )
    try:
        for a, b in zip(local.classify_sync(TEXTS), remote.classify_sync(TEXTS), strict=True):
            assert abs(a.score - b.score) < 1e-4 and (a.label, a.windows) == (b.label, b.windows)
    finally:
        remote.close()


async def test_triton_counts_more_inferences_than_executions(
    trigger_model_dir: Path, work: Path, server: RunningServer
) -> None:
    remote = load_classifier(remote_settings(trigger_model_dir, work / "cache", server))
    try:
        before = _counts(server)
        await asyncio.gather(*(remote.classify([f"text {i}", "kaboom"]) for i in range(16)))
        after = _counts(server)
    finally:
        await remote.aclose()
    inferences, executions = after[0] - before[0], after[1] - before[1]
    # Triton's own counters: rows inferred vs model executions, i.e. server-side batches of > 1 row.
    assert inferences >= 32 and executions < 16 and inferences / executions > 1


def _counts(server: RunningServer) -> tuple[int, int]:
    text = httpx.get(f"{server.metrics_url}/metrics", timeout=5).text

    def metric(name: str) -> int:
        match = re.search(rf'^{name}{{model="crest",version="1"}} (\d+)', text, re.MULTILINE)
        return int(match.group(1)) if match else 0

    return metric("nv_inference_count"), metric("nv_inference_exec_count")


def test_a_wrong_model_name_on_triton_is_one_clear_error(
    trigger_model_dir: Path, work: Path, server: RunningServer
) -> None:
    with pytest.raises(ModelNotAvailableError, match="has no model 'nope'.*fix --classifier-model"):
        load_classifier(remote_settings(trigger_model_dir, work / "cache", server, model_name="nope"))

"""Real Open Inference Protocol servers for the remote-classifier tests: MLServer and Triton (PyTriton).

Each runs from its own venv made by ``.ci/install-servers.sh`` (MLServer pins an older Starlette than the
proxy's); where a venv is absent the tests skip, saying which command installs it. A server is started on
free loopback ports in its own process group, so a test can kill or freeze it (SIGKILL / SIGSTOP).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from crest_proxy.classifier import ClassifierSettings, CrestClassifier, load_classifier
from crest_proxy.classifier.artifact import Artifact, ensure_artifact
from crest_proxy.classifier.progress import PhaseReporter
from crest_proxy.classifier.repository import RepositoryOptions, export_repository, graph_inputs
from crest_proxy.classifier.settings import artifact_cache_dir
from crest_proxy.classifier.source import resolve_source
from tests.support.waiting import wait_http_ready

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("mlserver", "triton")
START_TIMEOUT_S = 120.0
_ROWS = re.compile(r"crest-onnx infer rows=(\d+) tokens=(\d+)")


def venv_of(kind: str) -> Path:
    """Where ``.ci/install-servers.sh`` puts the server's venv."""
    return Path(os.environ.get("CREST_SERVER_VENVS") or ROOT / ".cache-venvs") / kind


def require_server(kind: str) -> Path:
    """The server venv's python, or skip the test saying how to install it."""
    venv = venv_of(kind)
    if not (venv / ".installed").is_file():
        pytest.skip(f"{kind} is not installed in {venv}: run `.ci/install-servers.sh {kind}`")
    return venv / "bin" / "python"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    """A started server: its URLs, its process (group leader) and its log file."""

    kind: str
    url: str
    metrics_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server's whole process group (tritonserver and its stubs included)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def infer_rows(self) -> list[int]:
        """Rows per infer call, as the served runtime logged them (server-side evidence of batching)."""
        return [int(m.group(1)) for m in _ROWS.finditer(self.log.read_text(errors="replace"))]


def command_for(
    kind: str, python: Path, repo: Path, ports: tuple[int, int, int]
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that serve ``repo`` with ``kind``."""
    http, grpc, metrics = ports
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kind == "mlserver":
        env.update(
            MLSERVER_HTTP_PORT=str(http), MLSERVER_GRPC_PORT=str(grpc), MLSERVER_METRICS_PORT=str(metrics)
        )
        return [str(python.parent / "mlserver"), "start", str(repo)], env
    script = repo / "serve_pytriton.py"
    ports_args = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    return [str(python), str(script), str(repo), *ports_args], env


@contextmanager
def started(kind: str, repo: Path, log: Path, model: str = "crest") -> Iterator[RunningServer]:
    """Serve ``repo`` with ``kind`` until the model is ready; stop the server afterwards."""
    python = require_server(kind)
    ports = (free_port(), free_port(), free_port())
    argv, env = command_for(kind, python, repo, ports)
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = RunningServer(kind, f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[2]}", process, log)
    try:
        wait_ready(server, model)
        yield server
    finally:
        if process.poll() is None:
            server.kill()


def wait_ready(server: RunningServer, model: str) -> None:
    """Wait until ``GET /v2/models/{model}/ready`` answers 200 (fails early if the server dies)."""
    url = f"{server.url}/v2/models/{model}/ready"
    wait_http_ready(url, server.process, server.log.read_text, timeout=START_TIMEOUT_S, what=server.kind)


def fp32_artifact(model_dir: Path, cache: Path) -> Artifact:
    """The fp32 ONNX artifact of ``model_dir`` (scores then match in-process fp32 to 1e-6)."""
    settings = ClassifierSettings(model=str(model_dir), cache_dir=cache)
    source = resolve_source(settings)
    return ensure_artifact(
        source, quantize=False, cache_root=artifact_cache_dir(settings), report=PhaseReporter(None)
    )


@contextmanager
def local_fp32(model_dir: Path, cache: Path) -> Iterator[CrestClassifier]:
    """The same fp32 ONNX graph in process: the reference remote scores are compared with."""
    clf = load_classifier(
        ClassifierSettings(model=str(model_dir), backend="onnx", quantize=False, cache_dir=cache)
    )
    try:
        yield clf
    finally:
        clf.close()


def write_repository(kind: str, artifact: Artifact, root: Path, name: str = "crest") -> Path:
    """A Triton or MLServer repository for ``artifact`` under ``root``."""
    options = RepositoryOptions(format=kind, model_name=name, max_batch_size=32)
    export_repository(artifact, root, options, num_labels=2, inputs=graph_inputs(artifact.model_file))
    return root


def remote_settings(
    model_dir: Path, cache: Path, server: RunningServer, **overrides: object
) -> ClassifierSettings:
    """Settings for the remote backend against ``server`` (tokenizer from the same cache)."""
    fields: dict[str, object] = {"model": str(model_dir), "cache_dir": cache, "quantize": False}
    fields.update(backend="remote", url=server.url, **overrides)
    return ClassifierSettings(**fields)  # type: ignore[arg-type]


@contextmanager
def remote_classifier(kind: str, model_dir: Path, work: Path) -> Iterator[CrestClassifier]:
    """A remote-backend classifier for ``model_dir`` served by a freshly started ``kind`` server."""
    cache = work / "cache"
    repo = write_repository(kind, fp32_artifact(model_dir, cache), work / "repo")
    with started(kind, repo, work / f"{kind}.log") as server:
        clf = load_classifier(remote_settings(model_dir, cache, server))
        try:
            yield clf
        finally:
            clf.close()

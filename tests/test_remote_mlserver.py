"""Backend ``remote`` against a real MLServer (started here, from the venv .ci/install-servers.sh makes)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crest_proxy.classifier import ClassifierSettings, CrestClassifier, load_classifier
from crest_proxy.classifier.artifact import Artifact
from crest_proxy.errors import ClassifierError, ModelNotAvailableError
from tests.oip_servers import (
    RunningServer,
    fp32_artifact,
    free_port,
    local_fp32,
    remote_settings,
    require_server,
    started,
    write_repository,
)
from tests.support.harness import running_proxy
from tests.support.waiting import wait_for, wait_for_async

TEXTS = [
    "hello there, how are you?",
    "this is a kaboom",
    "Le renard brun saute. ZARQUON!",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "今日はいい天気ですね。",
    "word " * 900 + "kaboom",  # several windows; the trigger only in the last
    "word " * 900,
    "",
]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_server("mlserver")
    return tmp_path_factory.mktemp("mlserver")


@pytest.fixture(scope="module")
def artifact(work: Path, trigger_model_dir: Path) -> Artifact:
    return fp32_artifact(trigger_model_dir, work / "cache")


@pytest.fixture(scope="module")
def repo(work: Path, artifact: Artifact) -> Path:
    root = write_repository("mlserver", artifact, work / "repo")
    # A second model whose tensors are not CREST's: the proxy must refuse it at start-up.
    wrong = root / "mismatched"
    wrong.mkdir()
    shutil.copy(root / "crest" / "crest_onnx_runtime.py", wrong)
    settings = json.loads((root / "crest" / "model-settings.json").read_text())
    settings.update(
        name="mismatched",
        parameters={"uri": "../crest/model.onnx"},
        inputs=[{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        outputs=[{"name": "label", "datatype": "BYTES", "shape": [-1]}],
    )
    (wrong / "model-settings.json").write_text(json.dumps(settings))
    return root


@pytest.fixture(scope="module")
def server(repo: Path, work: Path) -> Iterator[RunningServer]:
    with started("mlserver", repo, work / "mlserver.log") as running:
        yield running


@pytest.fixture(scope="module")
def local(trigger_model_dir: Path, work: Path, artifact: Artifact) -> Iterator[CrestClassifier]:
    with local_fp32(trigger_model_dir, work / "cache") as clf:
        yield clf


@pytest.fixture(scope="module")
def remote(trigger_model_dir: Path, work: Path, server: RunningServer) -> Iterator[CrestClassifier]:
    clf = load_classifier(remote_settings(trigger_model_dir, work / "cache", server))
    yield clf
    clf.close()


def test_remote_scores_equal_in_process_scores(local: CrestClassifier, remote: CrestClassifier) -> None:
    here, there = local.classify_sync(TEXTS), remote.classify_sync(TEXTS)
    for a, b in zip(here, there, strict=True):
        assert abs(a.score - b.score) < 1e-4
        assert (a.label, a.windows) == (b.label, b.windows)
    assert [s.label for s in there][:3] == ["safe", "unsafe", "unsafe"]
    assert there[5].windows > 1 and there[5].label == "unsafe"
    assert remote.info.backend == "remote" and remote.health() is not None


async def test_concurrent_requests_reach_the_server_in_batches(
    remote: CrestClassifier, server: RunningServer
) -> None:
    before, calls_before = len(server.infer_rows()), remote.stats.model_calls
    await asyncio.gather(*(remote.classify([f"text number {i}", "kaboom"]) for i in range(16)))
    calls = remote.stats.model_calls - calls_before
    assert calls < 16  # 32 texts from 16 callers went out in fewer infer calls
    # The server writes its log line just after it answers.
    await wait_for_async(lambda: len(server.infer_rows()) >= before + calls, timeout=10, what="server log")
    rows = server.infer_rows()[before:]
    assert len(rows) == calls and max(rows) > 1, rows


def test_a_wrong_model_name_is_one_clear_startup_error(
    trigger_model_dir: Path, work: Path, server: RunningServer
) -> None:
    with pytest.raises(ModelNotAvailableError) as caught:
        load_classifier(remote_settings(trigger_model_dir, work / "cache", server, model_name="crest-v9"))
    message = str(caught.value)
    assert "no model 'crest-v9'" in message and "'crest'" in message and "--classifier-model" in message


def test_a_model_with_other_tensors_is_refused_at_startup(
    trigger_model_dir: Path, work: Path, server: RunningServer
) -> None:
    with pytest.raises(ModelNotAvailableError) as caught:
        load_classifier(remote_settings(trigger_model_dir, work / "cache", server, model_name="mismatched"))
    message = str(caught.value)
    assert "does not take CREST's tensors" in message
    assert "no input tensor 'input_ids'" in message and "export-repository" in message


def test_an_unreachable_server_is_one_clear_startup_error(trigger_model_dir: Path, work: Path) -> None:
    settings = ClassifierSettings(
        model=str(trigger_model_dir),
        cache_dir=work / "cache",
        quantize=False,
        backend="remote",
        url=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(ModelNotAvailableError, match="cannot reach the inference server"):
        load_classifier(settings)


def test_the_cli_classifies_remotely_and_names_a_wrong_model(
    trigger_model_dir: Path, work: Path, server: RunningServer
) -> None:
    base = [sys.executable, "-m", "crest_proxy", "classify", "--model", str(trigger_model_dir)]
    base += ["--cache-dir", str(work / "cache"), "--no-quantize", "--backend", "remote"]
    base += ["--classifier-url", server.url]
    ok = subprocess.run([*base, "kaboom", "hello"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert [line.split("\t")[0] for line in ok.stdout.splitlines()] == ["unsafe", "safe"]
    wrong = subprocess.run(
        [*base, "--classifier-model", "nope", "hi"], capture_output=True, text=True, timeout=120
    )
    assert wrong.returncode == 1 and "no model 'nope'" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.fixture
def disposable(repo: Path, tmp_path: Path) -> Iterator[RunningServer]:
    """A server of our own, to freeze or kill."""
    with started("mlserver", repo, tmp_path / "mlserver.log") as running:
        yield running


def test_a_frozen_server_times_out_then_recovers(
    trigger_model_dir: Path, work: Path, disposable: RunningServer
) -> None:
    clf = load_classifier(
        remote_settings(trigger_model_dir, work / "cache", disposable, remote_timeout_s=1.0)
    )
    try:
        disposable.signal(signal.SIGSTOP)  # accepts connections (kernel backlog), never answers
        started_at = time.monotonic()
        with pytest.raises(ClassifierError, match="did not answer within 1 s"):
            clf.classify_sync(["kaboom"])
        assert time.monotonic() - started_at < 5
        disposable.signal(signal.SIGCONT)
        assert clf.classify_sync(["kaboom"])[0].label == "unsafe"
    finally:
        disposable.signal(signal.SIGCONT)
        clf.close()


def test_a_killed_server_applies_on_error_opens_the_circuit_and_fails_readyz(
    trigger_model_dir: Path, work: Path, disposable: RunningServer, tmp_path: Path
) -> None:
    clf = load_classifier(remote_settings(trigger_model_dir, work / "cache", disposable))
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    try:
        with running_proxy(tmp_path, clf) as h:
            assert h.post("/v1/chat/completions", body).status_code == 200
            disposable.kill()
            closed = h.post("/v1/chat/completions", body, tenant="blocker")
            assert closed.status_code == 503 and closed.json()["error"]["code"] == "classifier_unavailable"
            assert h.post("/v1/chat/completions", body, tenant="failopen").status_code == 200
            errors = [r["error"] for r in h.records() if r.get("error")]
            assert any("cannot reach remote classifier" in e for e in errors), errors
            _wait_unready(h.proxy_url)
            for _ in range(5):
                with pytest.raises(ClassifierError):
                    clf.classify_sync(["x"])
            with pytest.raises(ClassifierError, match="circuit open"):
                clf.classify_sync(["x"])
    finally:
        clf.close()


def _wait_unready(proxy_url: str) -> None:
    """/readyz turns 503 once the background health check has seen the server gone."""
    wait_for(lambda: httpx.get(f"{proxy_url}/readyz").status_code == 503, timeout=15, what="/readyz 503")
    model = httpx.get(f"{proxy_url}/readyz").json()["checks"]["model"]
    assert not model["ok"] and "remote" in model["detail"], model

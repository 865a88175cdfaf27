"""A cached start needs no torch (issue 17): serving an exported artifact imports onnxruntime + tokenizers.

Each test runs the real CLI in a subprocess whose import system refuses torch, transformers and optimum,
as on an install without the ``export`` extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from crest_proxy.classifier import ClassifierSettings, load_classifier
from tests.oip_servers import free_port
from tests.support.waiting import wait_http_ready

BLOCKED = ("torch", "transformers", "optimum")
# Runs the CLI with those packages unimportable, then says which of them got imported (none, or it failed).
RUNNER = f"""
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
sys.meta_path.insert(0, Refuse())
from crest_proxy.cli import main
code = main(sys.argv[1:])
print("IMPORTED", sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}), file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def cache(trigger_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact cache holding the trigger model's int8 export (made with torch, once)."""
    root = tmp_path_factory.mktemp("cache")
    load_classifier(ClassifierSettings(model=str(trigger_model_dir), backend="onnx", cache_dir=root)).close()
    return root


def run_blocked(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, timeout=timeout, env=_env()
    )


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "CREST_PROXY_KEY": "sk-test-key"}


@pytest.mark.parametrize("backend", ["auto", "onnx"])
def test_classify_from_a_cached_artifact_imports_no_torch(
    trigger_model_dir: Path, cache: Path, backend: str
) -> None:
    done = run_blocked(
        "classify",
        "--model",
        str(trigger_model_dir),
        "--cache-dir",
        str(cache),
        "--backend",
        backend,
        "kaboom",
        "hi",
    )
    assert done.returncode == 0, done.stderr
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == ["unsafe", "safe"]
    assert "IMPORTED []" in done.stderr


def test_an_uncached_start_without_torch_says_which_extra_to_install(
    trigger_model_dir: Path, tmp_path: Path
) -> None:
    done = run_blocked(
        "classify", "--model", str(trigger_model_dir), "--cache-dir", str(tmp_path), "--backend", "onnx", "x"
    )
    assert done.returncode == 1
    assert "pip install 'crest-proxy[export]'" in done.stderr and "Traceback" not in done.stderr


def test_serve_from_a_cached_artifact_screens_without_torch(
    trigger_model_dir: Path, cache: Path, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    policy = {
        "tenant": "t",
        "keys": ["env:CREST_PROXY_KEY"],
        "upstream": {"base_url": "http://127.0.0.1:9/v1"},
    }
    (policies / "t.yaml").write_text(json.dumps(policy))
    port = free_port()
    argv = ["serve", "--policies", str(policies), "--port", str(port), "--model", str(trigger_model_dir)]
    argv += ["--audit-log", str(tmp_path / "audit.jsonl"), "--no-language-id"]
    env = {**_env(), "CREST_PROXY_CACHE": str(cache)}
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-c", RUNNER, *argv], env=env, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            url = f"http://127.0.0.1:{port}/readyz"
            wait_http_ready(url, server, lambda: _stderr_of(server), timeout=90, what="serve")
            ready_s = time.monotonic() - started
            body = {"model": "m", "messages": [{"role": "user", "content": "kaboom"}]}
            headers = {"authorization": "Bearer sk-test-key"}
            blocked = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers)
            assert (
                blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_policy_violation"
            )
        finally:
            server.terminate()  # uvicorn re-raises SIGTERM after its graceful shutdown: no IMPORTED line
            server.communicate(timeout=30)
    assert ready_s < 60  # seconds, not the minutes an export takes (measured: docs/remote-classifier.md)


def _stderr_of(server: subprocess.Popen[str]) -> str:
    return server.stderr.read() if server.stderr else ""

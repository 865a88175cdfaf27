"""What an operator sees when something outside the proxy is wrong: one clear line (issue 17, first hour)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from crest_proxy.upstream.pool import map_transport_error


def test_an_upstream_failure_logs_its_host_and_cause_but_no_url_or_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = httpx.Request("POST", "https://llm.internal:8443/v1/chat?api-key=sk-secret-123456", headers={})
    error = httpx.ConnectError("boom", request=request)
    error.__cause__ = ConnectionRefusedError(111, "refused")
    with caplog.at_level(logging.WARNING, logger="crest_proxy.upstream"):
        mapped = map_transport_error(error)
    assert mapped.status_code == 502
    (line,) = [r.getMessage() for r in caplog.records if r.name == "crest_proxy.upstream"]
    assert line == "upstream llm.internal:8443 failed: ConnectError caused by builtins.ConnectionRefusedError"
    assert "sk-secret" not in line and "/v1/chat" not in line


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``crest-proxy serve`` as an operator runs it, with a model that would take long to load if reached."""
    env = {**os.environ, "CREST_PROXY_KEY": "k", "OPENAI_API_KEY": "o", "HF_HUB_OFFLINE": "1"}
    policies = Path(__file__).resolve().parent.parent / "policies"
    command = [sys.executable, "-m", "crest_proxy", "serve", "--policies", str(policies), *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(tmp_path, "--port", str(port), "--model", str(tmp_path / "never-loaded"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"crest-proxy: port {port} on 127.0.0.1 is already in use by another process; "
        "stop it or choose another --port"
    )


@pytest.mark.parametrize("where", ["missing-folder/audit.jsonl", "a-directory"])
def test_an_unusable_audit_path_is_one_line_before_the_model_loads(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-directory").mkdir()
    done = serve(tmp_path, "--port", "0", "--audit-log", where, "--model", str(tmp_path / "never-loaded"))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"crest-proxy: audit log {where} cannot be written (")
    assert line.endswith("choose a writable --audit-log (or --no-audit-log with --audit-db)")


def test_a_model_path_that_does_not_exist_is_named_not_looked_up_on_the_hub(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()  # `model demo models/demo` was not run yet
    done = serve(tmp_path, "--port", "0", "--model", "models/demo")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "crest-proxy: model directory 'models/demo' does not exist"

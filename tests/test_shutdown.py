"""SIGTERM under load: in-flight requests finish, new ones are refused, every completed request is audited."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.harness import key_of, write_policies
from tests.support.servers import serve
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepting(port: int) -> bool:
    """True when something accepts connections on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    wait_for(
        lambda: proc.poll() is not None or accepting(port), timeout=timeout, what="crest-proxy to listen"
    )
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"


def send(url: str, i: int) -> tuple[int, str]:
    """One chat request; (status, request id), or (0, "") when the connection was refused."""
    body = {"model": "m", "messages": [{"role": "user", "content": f"request {i}"}]}
    headers = {"authorization": f"Bearer {key_of('logger')}", "x-request-id": f"load-{i}"}
    try:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)
    except httpx.TransportError:
        return 0, ""
    return response.status_code, response.headers.get("x-request-id", "")


def test_sigterm_drains_in_flight_requests_and_flushes_the_audit_log(
    tmp_path: Path, trigger_model_dir: Path
) -> None:
    fake = FakeUpstream(delay_s=0.6)
    with serve(fake.app()) as upstream_url:
        policy_dir = tmp_path / "policies"
        policy_dir.mkdir()
        env = {**os.environ, **write_policies(policy_dir, upstream_url)}
        port, audit_path = free_port(), tmp_path / "audit.jsonl"
        command = [
            sys.executable, "-m", "crest_proxy", "serve", "--policies", str(policy_dir), "--port", str(port),
            "--model", str(trigger_model_dir), "--backend", "torch", "--no-quantize",
            "--audit-log", str(audit_path), "--log-level", "warning",
        ]  # fmt: skip
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until_listening(port, proc)
            url = f"http://127.0.0.1:{port}"
            with ThreadPoolExecutor(max_workers=16) as pool:
                in_flight = [pool.submit(send, url, i) for i in range(16)]
                wait_for(lambda: len(fake.received) >= 8, what="requests to reach the (slow) upstream")
                proc.send_signal(signal.SIGTERM)
                wait_for(lambda: not accepting(port), what="the listener to close")
                late = send(url, 999)
                results = [f.result() for f in in_flight]
            # uvicorn drains, runs the lifespan shutdown, then re-raises the captured SIGTERM.
            assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            if proc.stderr:
                proc.stderr.close()
    assert "Traceback" not in stderr, stderr
    completed = {rid for status, rid in results if status == 200}
    assert len(completed) >= 8, results
    assert late == (0, ""), "a request after SIGTERM must be refused"
    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    audited = {(r["request_id"], r["direction"]) for r in records}
    for request_id in completed:
        assert (request_id, "inbound") in audited and (request_id, "outbound") in audited, request_id

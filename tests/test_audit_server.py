"""Audit faults through the proxy (issue 14): fail-closed tenants, /readyz and /metrics, a stream's record
before ``[DONE]``, and ``kill -9`` under load three times in a row."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from crest_proxy.audit.chain import verify
from crest_proxy.audit.files import AppendOnlyFile
from crest_proxy.audit.jsonl import JsonlAuditSink
from crest_proxy.policy.files import load_policies
from crest_proxy.server.app import create_app
from crest_proxy.settings import ServerSettings
from crest_proxy.types import Score
from tests.support.servers import serve
from tests.support.upstream import FakeUpstream
from tests.test_audit_durability import Disk
from tests.test_shutdown import free_port, wait_until_listening

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


class Safe:
    """Scores everything safe (the audit path, not the model, is under test)."""

    async def classify(self, texts: Sequence[str]) -> list[Score]:
        return [Score(0.01, "safe") for _ in texts]


def write_tenants(directory: Path, upstream_url: str) -> dict[str, str]:
    """``strict`` fails closed when records cannot be written; ``lenient`` carries on (the default)."""
    environ = {"UPSTREAM_KEY": "sk-upstream"}
    for tenant, on_failure in (("strict", "fail_closed"), ("lenient", "continue")):
        doc = {
            "tenant": tenant,
            "keys": [f"env:{tenant.upper()}_KEY"],
            "upstream": {"base_url": f"{upstream_url}/v1", "api_key": "env:UPSTREAM_KEY"},
            "audit": {"on_failure": on_failure},
        }
        (directory / f"{tenant}.yaml").write_text(yaml.safe_dump(doc))
        environ[f"{tenant.upper()}_KEY"] = f"sk-proxy-{tenant}"
    return environ


@contextmanager
def proxy_with(tmp_path: Path, sink: JsonlAuditSink, fake: FakeUpstream) -> Iterator[str]:
    with serve(fake.app()) as upstream_url:
        environ = write_tenants(tmp_path, upstream_url)
        settings = ServerSettings(policies_dir=tmp_path, audit_log=sink.path, detect_language=False)
        asyncio.run(sink.start())
        app = create_app(
            settings, policies=load_policies(tmp_path, environ=environ), classifier=Safe(), audit=sink
        )
        try:
            with serve(app) as proxy_url:
                yield proxy_url
        finally:
            asyncio.run(sink.aclose())


def chat(url: str, tenant: str, body: dict[str, Any] = CHAT) -> httpx.Response:
    headers = {"authorization": f"Bearer sk-proxy-{tenant}"}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def metric(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(line.split()[1])


def test_fail_closed_tenants_get_503_while_records_cannot_be_written(tmp_path: Path) -> None:
    disk = Disk()
    sink = JsonlAuditSink(tmp_path / "audit.jsonl", opener=disk.opener, retry_delays_s=(0.0,))
    with proxy_with(tmp_path, sink, FakeUpstream()) as url:
        assert chat(url, "strict").status_code == 200
        disk.broken = True
        # The first fail-closed request after the disk broke: its record cannot be confirmed, so no answer.
        first = chat(url, "strict")
        lenient = chat(url, "lenient")  # carries on; its records are lost and counted
        sink.flush_sync()
        refused = chat(url, "strict")  # refused before anything is forwarded
        ready, metrics = httpx.get(f"{url}/readyz"), httpx.get(f"{url}/metrics").text
        lost = sink.lost
        disk.broken = False
        wait_for(lambda: sink.problem() is None)  # the writer probes the disk on its own and notices
        healed = chat(url, "strict")
        sink.flush_sync()
        metrics_after = httpx.get(f"{url}/metrics").text
    for response in (first, refused):
        assert response.status_code == 503
        error = response.json()["error"]
        assert (error["code"], error["type"]) == ("audit_unavailable", "server_error")
        assert "audit.on_failure" in error["message"]
    assert lenient.status_code == 200
    assert ready.status_code == 503 and ready.json()["checks"]["audit"]["ok"] is False
    assert metric(metrics, "crest_audit_writable") == 0.0
    assert metric(metrics, "crest_audit_lost_records_total") == lost == 4  # strict in+out, lenient in+out
    assert healed.status_code == 200
    assert metric(metrics_after, "crest_audit_gap_notes_total") == 1.0
    assert metric(metrics_after, "crest_audit_writable") == 1.0
    result = verify([sink.path])
    assert result.ok and result.lost == 4


class GatedFile(AppendOnlyFile):
    """Holds a write that carries an outbound record until the test opens the gate."""

    def __init__(self, path: Path, arrived: threading.Event, gate: threading.Event) -> None:
        super().__init__(path)
        self.arrived, self.gate = arrived, gate

    def write(self, text: str) -> int:
        if '"direction":"outbound"' in text:
            self.arrived.set()
            self.gate.wait(timeout=30)
        return super().write(text)


def test_a_streams_outbound_record_is_written_before_done_is_sent(tmp_path: Path) -> None:
    arrived, gate = threading.Event(), threading.Event()
    sink = JsonlAuditSink(tmp_path / "audit.jsonl", opener=lambda p: GatedFile(p, arrived, gate))
    fake = FakeUpstream(stream_pieces=["Hello", " there"])
    received: list[str] = []
    with proxy_with(tmp_path, sink, fake) as url:

        def stream() -> None:
            headers = {"authorization": "Bearer sk-proxy-lenient"}
            body = {**CHAT, "stream": True}
            with httpx.stream(
                "POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30
            ) as r:
                received.extend(line for line in r.iter_lines() if line)

        client = threading.Thread(target=stream)
        client.start()
        assert arrived.wait(timeout=30)  # the outbound record is being written …
        time.sleep(0.2)  # … and stays unwritten a while: [DONE] must not overtake it
        assert "data: [DONE]" not in received
        gate.set()
        client.join(timeout=30)
        sink.flush_sync()
    assert received[-1] == "data: [DONE]"
    outbound = [json.loads(line) for line in sink.path.read_text().splitlines() if '"outbound"' in line]
    assert len(outbound) == 1 and outbound[0]["extra"]["stream"] is True


# --- kill -9 under load ----------------------------------------------------------------------------------


def load(url: str, stop: threading.Event, worker: int) -> int:
    """Send chat requests (every third one streamed) until ``stop``; the number answered."""
    answered, n = 0, 0
    headers = {"authorization": "Bearer sk-proxy-lenient"}
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            n += 1
            body = {**CHAT, "stream": n % 3 == 0}
            try:
                answered += (
                    client.post(f"{url}/v1/chat/completions", json=body, headers=headers).status_code == 200
                )
            except httpx.TransportError:
                time.sleep(0.01)  # the server is being killed or restarted
    return answered


def start_serve(tmp_path: Path, model_dir: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "crest_proxy", "serve", "--policies", str(tmp_path / "policies"),
        "--port", str(port),
        "--model", str(model_dir), "--backend", "torch", "--no-quantize", "--no-language-id",
        "--audit-log", str(tmp_path / "audit.jsonl"), "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until_listening(port, proc)
    return proc


def audited_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow  # four start-ups of a real serve (~40 s on 2 cores)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigkill_under_load_three_times_leaves_no_torn_line_and_a_verifiable_chain(
    tmp_path: Path, trigger_model_dir: Path
) -> None:
    fake = FakeUpstream(stream_pieces=["a", "b", "c"])
    audit = tmp_path / "audit.jsonl"
    with serve(fake.app()) as upstream_url:
        (tmp_path / "policies").mkdir()
        env = {**os.environ, **write_tenants(tmp_path / "policies", upstream_url)}
        port, url = free_port(), ""
        proc = start_serve(tmp_path, trigger_model_dir, port, env)
        url = f"http://127.0.0.1:{port}"
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=8) as pool:
            workers = [pool.submit(load, url, stop, i) for i in range(8)]
            try:
                for _ in range(3):
                    target = audited_lines(audit) + 200
                    while audited_lines(audit) < target:  # kill while records are pouring in
                        assert proc.poll() is None
                        time.sleep(0.01)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=30)
                    proc.stderr and proc.stderr.close()  # type: ignore[func-returns-value]
                    proc = start_serve(tmp_path, trigger_model_dir, port, env)  # repairs a torn tail first
                    assert audit.read_bytes().endswith(b"\n"), "a torn line remains after restart"
                    done = subprocess.run(
                        [sys.executable, "-m", "crest_proxy", "audit", "verify", str(audit)],
                        capture_output=True, text=True, timeout=120,
                    )  # fmt: skip
                    assert done.returncode == 0, done.stderr
                    assert done.stdout.splitlines()[-1].startswith("ok: ")
            finally:
                stop.set()
                answered = sum(w.result() for w in workers)
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                proc.stderr and proc.stderr.close()  # type: ignore[func-returns-value]
    assert answered >= 250  # ~100 answered requests (200 records) between kills
    result = verify([audit])
    assert result.ok, result.first_break
    for raw in audit.read_bytes().splitlines():
        json.loads(raw)  # every line is whole

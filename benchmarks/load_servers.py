"""The load benchmark's processes: start one, wait until it answers, read its RSS and CPU time, stop it.

Every process is started in a session of its own, so stopping it (SIGTERM, then SIGKILL) reaches its
children too and nothing else. Memory and CPU are read from /proc for the process and its descendants
(LiteLLM or uvicorn may fork workers).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Server:
    """A started server process: its name, base URL and log file."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        """The process id of the server's top process."""
        return self.process.pid


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    health: str,
    logs: Path,
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = 180.0,
) -> Iterator[Server]:
    """Start ``argv``, wait until GET ``health`` answers 200, yield the server; always stop it afterwards."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True,
        )  # fmt: skip
    server = Server(name, process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_ready(server, health, start_timeout_s)
        yield server
    finally:
        stop(server)


def _wait_ready(server: Server, health: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode} while starting:\n{tail}"
            )
        try:
            with urllib.request.urlopen(server.url + health, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} did not answer {health} within {timeout_s:.0f} s (log: {server.log})")


def stop(server: Server, grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it is still there after ``grace_s``."""
    if server.process.poll() is None:
        _signal_group(server.pid, signal.SIGTERM)
        try:
            server.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(server.pid, signal.SIGKILL)
            server.process.wait(5)
    # A worker the top process left behind still belongs to the group (the group id is the top pid).
    _signal_group(server.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its living descendants."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 1000:
        current = todo.pop()
        found.append(current)
        for task in _tasks(current):
            todo.extend(int(c) for c in _read(f"/proc/{current}/task/{task}/children").split())
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in bytes (0 once it has gone)."""
    total = 0
    for member in process_tree(pid):
        fields = _read(f"/proc/{member}/statm").split()
        total += int(fields[1]) * _PAGE if len(fields) > 1 else 0
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its living descendants."""
    total = 0
    for member in process_tree(pid):
        stat = _read(f"/proc/{member}/stat")
        # Field 2 (comm) may hold spaces; everything after its closing parenthesis is space-separated.
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12]) if len(fields) > 12 else 0
    return total / _TICKS


def _tasks(pid: int) -> list[str]:
    """The thread ids of ``pid`` (a child may hang off any thread); none once it has gone."""
    try:
        return os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return []


def _read(path: str) -> str:
    """A /proc file's text; empty once the process has gone."""
    try:
        return Path(path).read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return os.getloadavg()

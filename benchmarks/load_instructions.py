#!/usr/bin/env python
"""Pass-through cost as instructions: the no-op proxy's app called in-process, counted by valgrind.

    python benchmarks/load_instructions.py --baseline ../baseline        # this tree vs another checkout
    python benchmarks/load_instructions.py --baseline ../baseline --stream

Why a second measure next to ``load.py --baseline``: on a shared 2-core VM, process CPU per request moves
by ±5–10 % between runs of the same code, as much as the changes it is meant to judge. Instructions do
not: valgrind (``cachegrind``, no cache simulation) counts what one request executes to within ~0.5 %.
They miss cache misses and system time, so read them next to ``load.py``, not instead of it.

Each tree runs the same driver by PYTHONPATH (``load_crest.py``'s launcher: same policy, no-op
classifier): the Starlette app is called directly (no sockets, no uvicorn, no aiohttp), its upstream an
in-memory httpx transport with the fake upstream's answers (``load_upstream.py``; streams one frame per
event-loop turn). ``N`` requests minus ``N0`` requests, divided by the difference, is one request without
start-up. Needs ``valgrind`` on PATH (Debian: ``apt-get install -y valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from load_clients import request_body  # noqa: E402  (benchmarks/ is not a package)
from load_fixtures import PROXY_KEY, UPSTREAM_KEY, write_policy  # noqa: E402
from load_upstream import build_answers  # noqa: E402

TOKENS = 60  # pieces per answer, as load.py's default


class _Frames(httpx.AsyncByteStream):
    """SSE frames, one per event-loop turn, as a paced upstream delivers them."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames

    async def __aiter__(self) -> Any:
        for frame in self._frames:
            await asyncio.sleep(0)
            yield frame


class _Upstream(httpx.AsyncBaseTransport):
    """The fake upstream's answers, served from memory."""

    def __init__(self) -> None:
        self._answers = build_answers(TOKENS, 0.0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(await request.aread())
        if body.get("stream"):
            frames = [self._answers.head, *self._answers.pieces, self._answers.tail]
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Frames(frames))
        headers = {"content-type": "application/json", "openai-processing-ms": "3"}
        return httpx.Response(200, headers=headers, content=self._answers.body)


def _app(workdir: Path) -> Any:
    """The no-op proxy of the tree on PYTHONPATH, built as load_crest.py builds it."""
    spec = importlib.util.spec_from_file_location("load_crest", BENCH / "load_crest.py")
    assert spec is not None and spec.loader is not None
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    policies = write_policy(workdir / "policies", "http://upstream.invalid")
    return launcher.build_app(policies, 1, workdir / "audit.jsonl", launcher.NoopClassifier(), _Upstream())


async def _drive(app: Any, requests: int, stream: bool) -> None:
    body = request_body(stream)
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", f"Bearer {PROXY_KEY}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def one() -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
        }  # fmt: skip
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected
            raise AssertionError("unreachable")

        out: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            out.append(message)

        await app(scope, receive, send)
        if out[0].get("status") != 200:
            raise SystemExit(f"the proxy answered {out}")

    async with app.router.lifespan_context(app):
        for _ in range(requests):
            await one()
        app.state.gateway.audit.flush_sync()


def _driver() -> None:
    """In the child process: build the app and send ``--requests`` requests."""
    requests, stream = int(os.environ["LOAD_INSTRUCTIONS_N"]), os.environ.get("LOAD_INSTRUCTIONS_STREAM")
    with tempfile.TemporaryDirectory() as workdir:
        app = _app(Path(workdir))
        asyncio.run(_drive(app, requests, bool(stream)))


def count(tree: Path, requests: int, stream: bool) -> int:
    """Instructions (valgrind ``I refs``) of one driver process serving ``requests`` from ``tree``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "LOAD_INSTRUCTIONS_N": str(requests),
        "LOAD_INSTRUCTIONS_STREAM": "1" if stream else "",
        "BENCH_PROXY_KEY": PROXY_KEY,
        "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
        "OPENBLAS_NUM_THREADS": "1",  # the same count whatever the BLAS thread pool does
    }
    with tempfile.TemporaryDirectory() as out:
        command = [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}/cg",
            sys.executable, __file__, "--driver",
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return int(found.group(1).replace(",", ""))


def per_request(tree: Path, low: int, high: int, stream: bool) -> float:
    """Instructions of one request (or stream) of ``tree``, start-up excluded."""
    return (count(tree, high, stream) - count(tree, low, stream)) / (high - low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=False, help="another checkout to compare with")
    parser.add_argument("--stream", action="store_true", help="streamed chat completions (60 events)")
    parser.add_argument("--requests", type=int, default=None, help="N (default 400; streams 80)")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        _driver()
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install -y valgrind)")
    high = args.requests or (80 if args.stream else 400)
    low = high // 4
    what = "stream" if args.stream else "request"
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    counted = {name: per_request(tree, low, high, args.stream) for name, tree in trees}
    print(f"| tree | instructions per {what} | ÷ baseline |\n|---|---|---|")
    for name, value in counted.items():
        ratio = f"{value / counted['baseline']:.3f}" if "baseline" in counted else "–"
        print(f"| {name} | {value / 1e6:.2f} M | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

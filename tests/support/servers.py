"""Run an ASGI app under a real uvicorn server on loopback, in a background thread, for tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from tests.support.waiting import wait_for


@contextmanager
def serve(app: ASGIApp, *, startup_timeout: float = 60.0, **options: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port), yield its base URL, shut down (lifespan included) on exit.

    ``options`` are more ``uvicorn.Config`` arguments (e.g. ``server.connections.uvicorn_options``).
    """
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws="none", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout=startup_timeout, what="server start")
    if not server.started:
        raise RuntimeError("test server failed to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

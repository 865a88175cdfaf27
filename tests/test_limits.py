"""Load shedding: requests beyond the in-flight cap get an OpenAI-style 503 at once; probes still pass."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from crest_proxy.server.limits import InflightLimitMiddleware
from tests.support.waiting import wait_for_async


async def test_requests_beyond_the_cap_are_refused_and_the_cap_recovers() -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> JSONResponse:
        await release.wait()
        return JSONResponse({"ok": True})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/v1/slow", slow), Route("/healthz", health)])
    limited = InflightLimitMiddleware(app, limit=2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(limited), base_url="http://proxy") as client:
        held = [asyncio.create_task(client.get("/v1/slow")) for _ in range(2)]
        await wait_for_async(lambda: limited.inflight == 2, what="two requests in flight")
        refused = await client.get("/v1/slow")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == {
            "message": "crest-proxy is at its limit of 2 requests in flight; retry shortly.",
            "type": "server_error",
            "param": None,
            "code": "overloaded",
        }
        assert (await client.get("/healthz")).status_code == 200  # probes are never shed
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert limited.inflight == 0
        assert (await client.get("/v1/slow")).status_code == 200

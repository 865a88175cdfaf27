"""The aiohttp-backed upstream transport against real sockets: answers, streams, and every way one fails.

The servers are raw asyncio TCP servers on loopback, so a test can send exactly the bytes it needs: a
malformed status line, a body cut short, a connection dropped or left silent.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trustme

from crest_proxy.upstream.aiohttp_transport import AiohttpTransport
from crest_proxy.upstream.pool import UPSTREAM_LIMITS, UpstreamPool
from tests.support.policies import make_policy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A TCP (or, given ``tls``, TLS) server on 127.0.0.1 running ``handler`` per connection; its base URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        for task in list(tasks):
            task.cancel()
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One HTTP/1.1 request: its request line, headers (lower-case names) and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        if field:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


def response_bytes(body: bytes, *, status: str = "200 OK", extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def client_for(url: str, **timeouts: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(**{"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0, **timeouts})
    return httpx.AsyncClient(
        base_url=url, transport=AiohttpTransport(limits=UPSTREAM_LIMITS), timeout=timeout
    )


async def test_a_json_exchange_keeps_method_path_headers_and_body() -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # keep-alive: serve every request on this connection
            seen.append(await read_request(reader))
            writer.write(response_bytes(b'{"ok":true}', extra="x-ratelimit-remaining: 7\r\n"))
            await writer.drain()

    async with raw_server(handler) as url, client_for(url) as client:
        first = await client.post(
            "/v1/chat/completions", json={"a": 1}, headers={"authorization": "Bearer k"}
        )
        second = await client.post("/v1/chat/completions", json={"a": 2})
    assert first.status_code == 200 and first.json() == {"ok": True}
    assert first.headers["x-ratelimit-remaining"] == "7"
    assert first.http_version == "HTTP/1.1"
    line, headers, body = seen[0]
    assert line == "POST /v1/chat/completions HTTP/1.1"
    assert headers["authorization"] == "Bearer k" and headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("python-httpx")  # httpx's headers, not aiohttp's defaults
    assert json.loads(body) == {"a": 1}
    assert json.loads(seen[1][2]) == {"a": 2} and second.status_code == 200


async def test_a_large_body_arrives_whole_with_its_content_length() -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, body = await read_request(reader)
        seen.append((headers, body))
        writer.write(response_bytes(b"{}"))
        await writer.drain()

    body = bytes(range(256)) * (3 * 4096 + 7)  # about 3 MiB: sent in pieces, not as one bytes payload
    async with raw_server(handler) as url, client_for(url) as client:
        answer = await client.post(
            "/v1/embeddings", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 200
    headers, received = seen[0]
    assert received == body
    assert headers["content-length"] == str(len(body)) and "transfer-encoding" not in headers


async def test_a_gzip_answer_is_decoded_once() -> None:
    payload = gzip.compress(b'{"ok":"zipped"}')

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response_bytes(payload, extra="content-encoding: gzip\r\n"))
        await writer.drain()

    async with raw_server(handler) as url, client_for(url) as client:
        answer = await client.get("/v1/models")
    assert answer.json() == {"ok": "zipped"}


async def test_streamed_pieces_arrive_as_they_are_sent() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        writer.write(b"b\r\ndata: one\n\n\r\n")
        await writer.drain()
        await release.wait()  # the second piece is only sent once the client has the first
        writer.write(b"b\r\ndata: two\n\n\r\n0\r\n\r\n")
        await writer.drain()

    pieces = []
    async with (
        raw_server(handler) as url,
        client_for(url) as client,
        client.stream("POST", "/v1/chat/completions", json={}) as response,
    ):
        async for piece in response.aiter_bytes():
            pieces.append(piece)
            release.set()
    assert b"".join(pieces) == b"data: one\n\ndata: two\n\n"
    assert pieces[0] == b"data: one\n\n"


async def test_an_abandoned_stream_closes_its_connection_instead_of_reusing_it() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        line, _, _ = await read_request(reader)
        if "stream" in line:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
            await writer.drain()
            await asyncio.sleep(3600)  # the rest never comes
        writer.write(response_bytes(b'{"fresh":true}'))
        await writer.drain()

    async with raw_server(handler) as url, client_for(url) as client:
        async with client.stream("GET", "/stream") as response:
            async for _ in response.aiter_bytes():
                break
        after = await client.get("/plain")
    assert after.json() == {"fresh": True}  # not the leftovers of the abandoned stream
    assert connections == 2


async def test_connection_refused_is_a_connect_error() -> None:
    async with raw_server(read_request) as url:
        pass  # closed again: nothing listens on its port now
    async with client_for(url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/v1/models")


async def test_a_silent_upstream_is_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(3600)

    async with raw_server(handler) as url, client_for(url, read=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/v1/models")


async def test_an_upstream_that_never_reads_the_body_is_a_write_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)  # accepts the connection, reads nothing

    body = b"x" * (64 * 1024 * 1024)  # far more than the socket buffers hold
    async with (
        raw_server(handler) as url,
        client_for(url, connect=0.2, pool=0.2, write=0.2, read=0.2) as client,
    ):
        with pytest.raises(httpx.WriteTimeout):
            await client.post("/v1/embeddings", content=body)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"", id="closed-before-answering"),
        pytest.param(b"NOT HTTP AT ALL\r\n\r\n", id="malformed-status-line"),
        pytest.param(response_bytes(b'{"cut": "sh')[:-3], id="body-shorter-than-content-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk-size"),
    ],
)
async def test_a_broken_answer_is_a_remote_protocol_error(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    async with raw_server(handler) as url, client_for(url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/v1/models")


async def test_a_stream_cut_mid_way_raises_while_reading() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n")
        await writer.drain()
        writer.close()

    async with (
        raw_server(handler) as url,
        client_for(url) as client,
        client.stream("POST", "/v1/chat/completions", json={}) as response,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in response.aiter_bytes():
                pass


async def test_a_cookie_one_tenants_answer_sets_never_reaches_another_tenants_request() -> None:
    cookies: list[str | None] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, headers, _ = await read_request(reader)
            cookies.append(headers.get("cookie"))
            writer.write(response_bytes(b"{}", extra="set-cookie: session=tenant-a; Path=/\r\n"))
            await writer.drain()

    async with raw_server(handler) as url:
        pool = UpstreamPool()
        tenants = [make_policy(tenant=name, upstream={"base_url": url}) for name in ("a", "b")]
        try:
            first, second = [await pool.client_for(policy) for policy in tenants]
            assert first is second  # one pooled client per upstream, shared by both tenants
            await first.get("models")
            await second.get("models")
        finally:
            await pool.aclose()
    assert cookies == [None, None]


async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(response_bytes(b'{"tls":true}'))
    await writer.drain()


async def test_tls_upstreams_are_verified_against_public_roots() -> None:
    # A certificate from a CA that no public trust store holds: what a man in the middle would present.
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_tls)
    async with raw_server(answer_once, tls=server_tls) as url, client_for(url) as client:
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            await client.get("/v1/models")


async def test_tls_works_end_to_end_with_a_trusted_certificate() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    transport = AiohttpTransport(limits=UPSTREAM_LIMITS, verify=client_tls)
    async with (
        raw_server(answer_once, tls=server_tls) as url,
        httpx.AsyncClient(transport=transport) as client,
    ):
        answer = await client.get(f"{url}/v1/models")
    assert answer.json() == {"tls": True}

"""Connection limits that uvicorn's httptools protocol lacks: caps on connections, header size and time.

Uvicorn holds a connection that never sends a byte forever, lets request headers grow without bound and
accepts sockets until the process runs out of file descriptors (issue 14: 1,100 idle sockets took the
process down, ``/healthz`` included). ``protocol_for`` builds a subclass of uvicorn's ``HttpToolsProtocol``
that adds:

* a cap on open connections: past it the longest-idle connection (no request in progress) is closed to
  make room, so a flood of idle sockets cannot lock out a health check; only when every connection is busy
  is the new one refused with 503;
* a deadline for each request's line and headers (408), which also ends connections that connect and
  send nothing;
* caps on header bytes and header count (431);
* a cap on the request body uvicorn reads and discards after an early answer (401, 413 …).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from crest_proxy.settings import ServerSettings

log = logging.getLogger("crest_proxy.server.connections")

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server process allows its clients' connections."""

    max_connections: int = ServerSettings.max_connections
    header_timeout_s: float = ServerSettings.header_timeout_s
    max_header_bytes: int = ServerSettings.max_header_bytes
    max_headers: int = ServerSettings.max_headers
    max_discard_bytes: int = ServerSettings.max_body_bytes

    @classmethod
    def of(cls, settings: ServerSettings) -> ConnectionLimits:
        """The limits ``settings`` ask for."""
        return cls(
            settings.max_connections,
            settings.header_timeout_s,
            settings.max_header_bytes,
            settings.max_headers,
            settings.max_body_bytes,
        )


class _HeadLimitExceeded(Exception):
    """Raised inside a parser callback to stop parsing a request whose head is over a limit."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol with connection, header and discard limits (see the module doc)."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True  # between requests, or reading a request line and headers
        self._head_bytes = 0
        self._header_count = 0
        self._head_size = 0  # bytes of the target and headers parsed so far
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None
        self._discarded = 0
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Admit the connection (evicting an idle one if at the cap) and start its head deadline."""
        super().connection_made(transport)
        self.idle_since = self.loop.time()
        if len(self.connections) > self.limits.max_connections and not self._evict_idle():
            self._answer(
                503, "crest-proxy has too many open connections; retry shortly.", "too_many_connections"
            )
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the head deadline, then let uvicorn clean up."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count the bytes of a request head; refuse it (431) once it is over the limit."""
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting_head and self._head_bytes > self.limits.max_header_bytes and self._open():
            self._answer(
                431, f"Request headers are over {self.limits.max_header_bytes} bytes.", "headers_too_large"
            )

    def on_message_begin(self) -> None:
        """A request starts: its head must be complete within the deadline."""
        super().on_message_begin()
        self._awaiting_head = True
        self._header_count = self._head_size = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        """Count the target's bytes toward the head's size."""
        self._head_size += len(url)
        self._check_head()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count headers; past a limit parsing stops (answered 431 in ``send_400_response``)."""
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        self._check_head()
        super().on_header(name, value)

    def _check_head(self) -> None:
        if self._header_count > self.limits.max_headers:
            self._refusal = (431, f"A request may carry at most {self.limits.max_headers} headers.")
            raise _HeadLimitExceeded
        if self._head_size > self.limits.max_header_bytes:
            self._refusal = (431, f"Request headers are over {self.limits.max_header_bytes} bytes.")
            raise _HeadLimitExceeded

    def on_headers_complete(self) -> None:
        """The head is whole: stop its deadline and hand the request to uvicorn."""
        self._awaiting_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Bound what is read and thrown away after an early answer (uvicorn would read it all)."""
        if self.cycle is not None and self.cycle.response_complete:
            self._discarded += len(body)
            if self._discarded > self.limits.max_discard_bytes:
                self.transport.close()
            return
        super().on_body(body)

    def on_response_complete(self) -> None:
        """The connection is idle until the next request begins."""
        super().on_response_complete()
        self._awaiting_head = True
        self._discarded = 0
        self.idle_since = self.loop.time()

    def send_400_response(self, msg: str) -> None:
        """Uvicorn's answer to an unparsable request, or ours when a head limit stopped the parser."""
        if self._refusal is None:
            super().send_400_response(msg)
            return
        status, message = self._refusal
        self._answer(status, message, "headers_too_large")

    def is_idle(self) -> bool:
        """True when no request is in progress and none has begun (safe to close)."""
        return (
            self._awaiting_head
            and self._head_bytes == 0
            and (self.cycle is None or self.cycle.response_complete)
        )

    def _evict_idle(self) -> bool:
        idle = [
            c
            for c in self.connections
            if c is not self and isinstance(c, LimitedHttpToolsProtocol) and c.is_idle()
        ]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since)
        oldest.transport.close()
        return True

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._open():
            return
        if self._head_bytes:
            limit = self.limits.header_timeout_s
            self._answer(408, f"The request headers did not arrive within {limit:g}s.", "request_timeout")
        else:
            self.transport.close()  # connected and sent nothing: there is no one to answer

    def _open(self) -> bool:
        return not self.transport.is_closing()

    def _answer(self, status: int, message: str, code: str) -> None:
        """Write an OpenAI-style error with ``Connection: close`` and close (no ASGI app involved)."""
        kind = "server_error" if status >= 500 else "invalid_request_error"
        body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
        )
        self.transport.write(head + body)
        self.transport.close()


def protocol_for(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` that enforces ``limits``."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """The ``uvicorn.Config``/``uvicorn.run`` options that apply ``settings``' connection limits."""
    return {
        "http": protocol_for(ConnectionLimits.of(settings)),
        "timeout_keep_alive": settings.keep_alive_s,
    }


def raise_open_file_limit(wanted: int) -> int:
    """Raise this process's open-file soft limit toward ``wanted`` (capped by the hard limit); returns it.

    Each connection is a file descriptor; a soft limit of 1,024 (a common default) is below the cap.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft

"""The console as a Starlette app: mounted under ``/console`` by ``serve``, or run alone (``console``).

Every route but the login form needs a valid session: pages redirect to the form, exports answer 401.
Reads (files or PostgreSQL) block, so they run in the thread pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlparse

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

from crest_proxy.console import export, pages
from crest_proxy.console.auth import COOKIE, Sessions, Throttle, cookie_header
from crest_proxy.console.filters import PAGE_SIZE, FilterError, RecordFilter, parse_filter
from crest_proxy.console.overview import OVERVIEW_LIMIT, summarise
from crest_proxy.console.reader import RecordReader

Handler = Callable[[Request], Awaitable[Response]]
_MAX_LOGIN_BODY = 4096
# No script, no remote anything: the pages are HTML, inline CSS and inline SVG.
_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make Chromium send "Origin: null" on login
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


def console_routes(reader: RecordReader, admin_key: str) -> list[BaseRoute]:
    """``/console`` (redirect) and the console mounted under ``/console/``, for ``create_app``."""
    app = console_app(reader, admin_key)
    return [Route("/console", lambda _r: RedirectResponse("/console/", 308)), Mount("/console", app=app)]


def console_app(reader: RecordReader, admin_key: str) -> Starlette:
    """The console for ``reader``'s records, signed in with ``admin_key`` (required, non-empty)."""
    sessions = Sessions.for_key(admin_key)
    guarded = _Guard(sessions)
    views = _Views(reader)
    routes = [
        Route("/login", guarded.login_form, methods=["GET"]),
        Route("/login", guarded.login, methods=["POST"]),
        Route("/logout", guarded.logout, methods=["POST"]),
        Route("/", guarded.page(views.overview)),
        Route("/decisions", guarded.page(views.decisions)),
        Route("/requests/{request_id:path}", guarded.page(views.request)),
        Route("/export.csv", guarded.api(views.export_csv)),
        Route("/export.jsonl", guarded.api(views.export_jsonl)),
    ]
    return Starlette(routes=routes)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status, headers=_HEADERS)


class _Guard:
    """Signs in and out, and wraps handlers so they run only for a valid session."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self._throttle = Throttle()

    def signed_in(self, request: Request) -> bool:
        """Whether the request carries a valid session cookie."""
        return self._sessions.valid(request.cookies.get(COOKIE))

    def page(self, handler: Handler) -> Handler:
        """``handler`` for a signed-in browser; others are sent to the login form."""

        async def guarded(request: Request) -> Response:
            if not self.signed_in(request):
                return RedirectResponse("/console/login", 303, headers=_HEADERS)
            return await handler(request)

        return guarded

    def api(self, handler: Handler) -> Handler:
        """``handler`` for a signed-in client; others get 401 and no data."""

        async def guarded(request: Request) -> Response:
            if not self.signed_in(request):
                return PlainTextResponse("sign in at /console/login first", 401, headers=_HEADERS)
            return await handler(request)

        return guarded

    async def login_form(self, request: Request) -> Response:
        """The sign-in form (or the overview when already signed in)."""
        if self.signed_in(request):
            return RedirectResponse("/console/", 303, headers=_HEADERS)
        return _html(pages.login_page())

    async def login(self, request: Request) -> Response:
        """Check the key; a session cookie and the overview, or the form again with 401."""
        if not _same_origin(request):
            return _html(pages.login_page("This form must be sent from the console's own page."), 403)
        client = request.client.host if request.client else "unknown"
        if self._throttle.blocked(client):
            return _html(pages.login_page("Too many wrong keys from this address; try again later."), 429)
        body = await _bounded_body(request)
        key = parse_qs(body.decode("utf-8", "replace")).get("key", [""])[0] if body is not None else ""
        if not key or not self._sessions.key_matches(key):
            self._throttle.failed(client)
            return _html(pages.login_page("That key is not the admin key."), 401)
        response = RedirectResponse("/console/", 303, headers=_HEADERS)
        response.headers.append("set-cookie", cookie_header(self._sessions.mint(), secure=_secure(request)))
        return response

    async def logout(self, request: Request) -> Response:
        """Clear the session cookie."""
        response = RedirectResponse("/console/login", 303, headers=_HEADERS)
        response.headers.append("set-cookie", cookie_header("", secure=_secure(request), max_age=0))
        return response


def _same_origin(request: Request) -> bool:
    """False when a browser says the form came from another origin (defence in depth beside SameSite)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlparse(origin).netloc == request.headers.get("host", "")


async def _bounded_body(request: Request) -> bytes | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_LOGIN_BODY:
            return None
    return body


class _Views:
    """The signed-in pages and exports over one reader."""

    def __init__(self, reader: RecordReader) -> None:
        self._reader = reader

    async def overview(self, request: Request) -> Response:
        """Charts of the decisions since ``?since=`` (default: the last 24 hours)."""
        since = request.query_params.get("since") or "24h"
        try:
            wanted = parse_filter({"since": since})
        except FilterError as exc:
            return _html(pages.overview_error(since, str(exc)), 400)
        view = await run_in_threadpool(
            lambda: summarise(self._reader.overview_fields(wanted, OVERVIEW_LIMIT))
        )
        return _html(pages.overview_page(view, since))

    async def decisions(self, request: Request) -> Response:
        """One page of the filtered table (``?cursor=`` for older pages)."""
        params = dict(request.query_params)
        cursor = params.pop("cursor", None)
        try:
            wanted = parse_filter(params)
            result = await run_in_threadpool(self._reader.page, wanted, cursor, PAGE_SIZE)
        except FilterError as exc:
            return _html(pages.decisions_page(params, None, str(exc), cursor), 400)
        return _html(pages.decisions_page(wanted.raw, result, None, cursor))

    async def request(self, request: Request) -> Response:
        """Every record of one request id."""
        request_id = request.path_params["request_id"]
        found = await run_in_threadpool(self._reader.request, request_id)
        return _html(pages.request_page(request_id, found), 200 if found else 404)

    async def export_csv(self, request: Request) -> Response:
        """The current filter's records as CSV."""
        return self._export(request, "csv")

    async def export_jsonl(self, request: Request) -> Response:
        """The current filter's records as JSON Lines (the lines as written)."""
        return self._export(request, "jsonl")

    def _export(self, request: Request, kind: str) -> Response:
        try:
            wanted: RecordFilter = parse_filter(dict(request.query_params))
        except FilterError as exc:
            return PlainTextResponse(str(exc), 400, headers=_HEADERS)
        found = self._reader.newest(wanted)
        chunks = export.csv_chunks(found) if kind == "csv" else export.jsonl_chunks(found)
        media = "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson"
        headers = {**_HEADERS, "content-disposition": f'attachment; filename="crest-audit.{kind}"'}
        return StreamingResponse(iterate_in_threadpool(chunks), media_type=media, headers=headers)

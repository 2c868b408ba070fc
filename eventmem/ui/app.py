"""The viewer's web application (Starlette): read-only routes over one store.

`create_app` opens the store read-only when the application starts (its lifespan) and
closes it when it stops. Every route is a GET; any other method gets 405 before a route
runs. Query parameters are checked here: a malformed one is a 400, a session or position
the store does not have a 404, and no input reaches the store unchecked. Every response
carries a strict Content-Security-Policy (`eventmem.ui.html.CSP`).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import eventmem
from eventmem.errors import CorruptDatabaseError, EventmemError, InvalidInputError
from eventmem.rules import validate_session_id
from eventmem.store.base import is_postgres_url
from eventmem.ui import data, pages
from eventmem.ui.html import ASSETS, CSP, asset, layout

__all__ = ["LOOPBACK_HOSTS", "create_app", "mask"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
"""The host names the server answers to by default (a DNS-rebinding guard)."""

_log = logging.getLogger("eventmem.ui")
_NUMBER = re.compile(r"[0-9]{1,18}")
_ORDERS = ("created", "id", "events", "tokens", "last")
_SESSIONS_PER_PAGE = 50
_MAX_SEARCH = 500


def mask(target: str) -> str:
    """``target`` as the viewer shows it: a PostgreSQL URL without its password."""
    if not is_postgres_url(target):
        return target
    try:
        parts = urllib.parse.urlsplit(target)
    except ValueError:
        return "postgresql://(unparsable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _secrets(target: str) -> list[str]:
    """The spellings of the URL's password that a message could contain."""
    if not is_postgres_url(target):
        return []
    try:
        password = urllib.parse.urlsplit(target).password
    except ValueError:
        return []
    if not password:
        return []
    return sorted({password, urllib.parse.unquote(password)}, key=len, reverse=True)


class _BadRequest(Exception):
    """A query parameter that is missing or malformed (400)."""


def _one(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise _BadRequest(f"{name} is given {len(values)} times")
    return values[0] if values else None


def _number(request: Request, name: str, *, minimum: int) -> int | None:
    text = _one(request, name)
    if text is None or text == "":
        return None
    if not _NUMBER.fullmatch(text):
        raise _BadRequest(f"{name} must be a whole number >= {minimum}, got {text[:40]!r}")
    value = int(text)
    if value < minimum:
        raise _BadRequest(f"{name} must be >= {minimum}, got {value}")
    return value


def _session_id(request: Request) -> str:
    text = _one(request, "id")
    if text is None:
        raise _BadRequest("id (the session id) is missing")
    return validate_session_id(text)


class _Guard:
    """ASGI middleware: only GET (405 otherwise), only known hosts (400 otherwise), and
    the security headers on every response."""

    def __init__(self, app: ASGIApp, hosts: Collection[str] | None) -> None:
        self.app = app
        self.hosts = None if hosts is None else {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] != "GET":
            response: Response = HTMLResponse(
                "<p>405: the viewer is read-only; only GET is served</p>",
                status_code=405,
                headers={"Allow": "GET"},
            )
            await response(scope, receive, secured)
            return
        if self.hosts is not None:
            host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in self.hosts:
                response = HTMLResponse("<p>400: unknown host</p>", status_code=400)
                await response(scope, receive, secured)
                return
        await self.app(scope, receive, secured)


Handler = Callable[[Request], Awaitable[tuple[str, str]]]


def create_app(
    target: str,
    *,
    hosts: Collection[str] | None = LOOPBACK_HOSTS,
    open_options: dict[str, Any] | None = None,
) -> ASGIApp:
    """The viewer of the store at ``target`` (a SQLite path or a PostgreSQL URL), opened
    read-only (and never created) while the application runs.

    ``hosts`` are the ``Host`` names it answers to (None: any, for a server bound to a
    public address). ``open_options`` go to `eventmem.open`, after ``read_only=True``.
    """
    shown = mask(target)
    hidden = _secrets(target)
    store_box: dict[str, eventmem.Store] = {}

    def scrub(text: str) -> str:
        for secret in hidden:
            text = text.replace(secret, "***")
        return text

    def store() -> eventmem.Store:
        return store_box["store"]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        options: dict[str, Any] = {"create": False, **(open_options or {}), "read_only": True}
        async with eventmem.open(target, **options) as opened:
            store_box["store"] = opened
            yield
            del store_box["store"]

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            status = 200
            try:
                title, body = await handler(request)
            except (_BadRequest, InvalidInputError) as e:
                status, title, body = 400, "bad request", pages.error_page(400, scrub(str(e)))
            except data.NotFoundError as e:
                status, title, body = 404, "not found", pages.error_page(404, scrub(str(e)))
            except CorruptDatabaseError as e:
                status, title = 500, "damaged store"
                body = pages.error_page(
                    500, scrub(f"{e}; 'eventmem verify' names the first bad position")
                )
            except EventmemError as e:
                _log.warning("%s: %s", request.url.path, scrub(str(e)))
                status, title, body = 500, "error", pages.error_page(500, scrub(str(e)))
            return HTMLResponse(layout(title, body, store=shown), status_code=status)

        return endpoint

    links = pages.Links()

    async def sessions(request: Request) -> tuple[str, str]:
        search = _one(request, "q") or ""
        if len(search) > _MAX_SEARCH:
            raise _BadRequest(f"q is longer than {_MAX_SEARCH} characters")
        order = _one(request, "sort") or "created"
        if order not in _ORDERS:
            raise _BadRequest(f"sort must be one of {', '.join(_ORDERS)}, got {order[:40]!r}")
        descending = _one(request, "desc") or "0"
        if descending not in ("0", "1"):
            raise _BadRequest(f"desc must be 0 or 1, got {descending[:40]!r}")
        number = _number(request, "page", minimum=1) or 1
        found = await data.session_page(
            store(),
            search=search,
            order=order,
            descending=descending == "1",
            page=number,
            size=_SESSIONS_PER_PAGE,
        )
        body = pages.sessions_page(
            found, search=search, order=order, descending=descending == "1", links=links
        )
        return "sessions", body

    async def session(request: Request) -> tuple[str, str]:
        session_id = _session_id(request)
        version = await data.find_session(store(), session_id)
        series = await data.token_series(store(), session_id)
        report = await data.verify_session(store(), session_id)
        lineage = await data.lineage(store(), session_id)
        erased = await data.erasure(store(), session_id, version)
        body = pages.session_overview(session_id, version, series, report, links, lineage, erased)
        return f"session {session_id}", body

    async def timeline(request: Request) -> tuple[str, str]:
        session_id = _session_id(request)
        first = _number(request, "from", minimum=1) or 1
        found = await data.timeline_page(store(), session_id, first, pages.TIMELINE_PAGE)
        return f"timeline of {session_id}", pages.timeline_page(session_id, found, first, links)

    async def buffer(request: Request) -> tuple[str, str]:
        session_id = _session_id(request)
        at = _number(request, "at", minimum=1)
        number = _number(request, "page", minimum=1)
        view = await data.buffer_at(store(), session_id, at)
        pages_of = max(1, -(-len(view.entries) // pages.BUFFER_PAGE))
        if number is not None and number > pages_of:
            raise data.NotFoundError(f"the buffer has {pages_of} page(s); no page {number}")
        return f"buffer of {session_id}", pages.buffer_page(view, number, links)

    async def diff(request: Request) -> tuple[str, str]:
        session_id = _session_id(request)
        a = _number(request, "a", minimum=0)
        b = _number(request, "b", minimum=0)
        if a is None or b is None:
            raise _BadRequest("a and b (the two positions) are both needed")
        view = await data.diff_views(store(), session_id, a, b)
        return f"diff of {session_id}", pages.diff_page(view, links)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return HTMLResponse(
                layout("not found", pages.error_page(404, "no such file"), store=shown),
                status_code=404,
            )
        return Response(asset(name), media_type=ASSETS[name])

    async def not_found(request: Request, exc: Exception) -> Response:
        return HTMLResponse(
            layout("not found", pages.error_page(404, "no such page"), store=shown),
            status_code=404,
        )

    app = Starlette(
        routes=[
            Route("/", page(sessions)),
            Route("/session", page(session)),
            Route("/timeline", page(timeline)),
            Route("/buffer", page(buffer)),
            Route("/diff", page(diff)),
            Route("/static/{name}", static),
        ],
        exception_handlers={404: not_found},
        lifespan=lifespan,
    )
    return _Guard(app, hosts)

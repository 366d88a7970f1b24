"""`switchboard ui`: the read-only dispatch-log page, on the same Starlette stack as the handler.

It reads the same DynamoDB table the CLI reads, with the credentials of the
process that runs it, and has no route that writes. It binds to loopback by
default; the README says how to reach it from elsewhere without exposing it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..claims import Status, StoreUnavailable
from ..durations import parse_duration
from ..records import LogRecord
from ..settings import Settings
from ..store_hint import store_hint
from . import page

# The page allows nothing it does not serve itself: no CDN, no inline script, no frames.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# DNS rebinding: a page elsewhere must not reach this one through a name that resolves to loopback.
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def _since(text: str | None, default: str) -> float:
    try:
        return parse_duration(text or default)
    except argparse.ArgumentTypeError:
        return parse_duration(default)


def create_review_app(settings: Settings, *, store: Any = None, refresh_seconds: float = 2.0,
                      allowed_hosts: list[str] | None = None) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if store is not None:
            app.state.store = store
            yield
            return
        from ..dynamo import DynamoStore

        async with DynamoStore.open(settings, project=None) as opened:
            app.state.store = opened
            yield

    refresh_ms = int(refresh_seconds * 1000)

    def html(title: str, body: str, values: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
        form = page.filters_form(values or {}, [s.value for s in Status]) if values is not None else ""
        return HTMLResponse(page.document(title, body, table=settings.table_name, refresh_ms=refresh_ms,
                                          filters=form), status_code=status, headers=HEADERS)

    async def rooms(request: Request) -> Response:
        values = {k: request.query_params.get(k, "").strip() for k in ("room", "agent", "status", "since")}
        status = values["status"].upper() if values["status"].upper() in Status.__members__ else None
        since = time.time() - _since(values["since"], "24h")
        store = request.app.state.store
        records: list[LogRecord] = await store.query_log(room=values["room"] or None, agent=values["agent"] or None,
                                                         status=status, since=since, limit=500)
        if not (values["agent"] or status):
            # Rooms whose metadata dispatched nothing (broken, absent) show up through their events.
            records += await store.query_log(room=values["room"] or None, since=since, record_type="event", limit=500)
        return html("Switchboard: dispatch log", page.rooms_list(records, values), values)

    async def room(request: Request) -> Response:
        name = request.path_params["name"]
        since = time.time() - _since(request.query_params.get("since"), "7d")
        records = await request.app.state.store.room_timeline(name, since=since)
        return html(f"Switchboard: room {name}", page.room_page(name, records))

    async def room_json(request: Request) -> Response:
        from .timeline import sessions

        name = request.path_params["name"]
        since = time.time() - _since(request.query_params.get("since"), "7d")
        found = sessions(await request.app.state.store.room_timeline(name, since=since))
        # A slot as stored, every attribute: the JSON is for readers that want them all.
        for session in found:
            session["slots"] = [dict(slot.stored) for slot in session["slots"]]
        return JSONResponse({"room": name, "sessions": found}, headers=HEADERS)

    async def css(request: Request) -> Response:
        return Response(page.STYLE, media_type="text/css", headers=HEADERS)

    async def js(request: Request) -> Response:
        return Response(page.SCRIPT, media_type="text/javascript", headers=HEADERS)

    async def unavailable(request: Request, exc: Exception) -> Response:
        return html("Switchboard: the table cannot be read", f'<main id="content" data-version="down"><p class="error">'
                    f"the dispatch log cannot be read: {escape(str(exc))} (table {settings.table_name}, region "
                    f"{settings.aws_region}){escape(store_hint(str(exc), settings))}</p></main>", status=503)

    return Starlette(
        routes=[Route("/", rooms), Route("/rooms/{name:path}.json", room_json), Route("/rooms/{name:path}", room),
                Route("/page.css", css), Route("/page.js", js)],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS + (allowed_hosts or []))],
        exception_handlers={StoreUnavailable: unavailable},
        lifespan=lifespan,
    )

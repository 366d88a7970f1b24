"""The Starlette app: POST /webhook and GET /healthz.

Answers, and why:
    401  no token, a bad or expired one, an unknown key, a body that isn't what was signed
    413  body over the limit, refused while reading, never buffered whole
    415  a content type other than application/webhook+json or application/json
    408  a body that trickles in too slowly (it would stall the room's queue)
    400  signed correctly, but not a WebhookEvent
    200  handled, including events we ignore and metadata the policy rejects
    503  DynamoDB or LiveKit unavailable, or another delivery holds a claim: a retry helps
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .claims import DispatchStore, StoreUnavailable
from .contract import Routing
from .dispatcher import LiveKitDispatcher
from .observability import configure_logging, correlation_id
from .settings import Settings
from .snapstart import Instance
from .verify import (
    BodyTimeout,
    PayloadTooLarge,
    Unauthorized,
    WebhookRejected,
    check_content_type,
)

log = logging.getLogger("switchboard")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body is over the {limit}-byte limit")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise BodyTimeout(f"body was not received within {timeout:g} s") from None
    return b"".join(chunks)


def create_app(settings: Settings | None = None, *, store: DispatchStore | None = None,
               dispatcher: LiveKitDispatcher | None = None) -> Starlette:
    """The webhook app. Without a store, it opens DynamoDB itself for its lifetime."""
    settings = settings or Settings()
    # Loaded now, so a broken routing file fails at start-up, not on the first webhook.
    routing = Routing.load(settings.routing_file)
    # The settings, verifier and clients, renewed after a SnapStart restore (handler/snapstart.py).
    instance = Instance(settings, routing, store=store, dispatcher=dispatcher)

    def ready(message: str) -> None:
        live = instance.settings
        log.info(message, extra={"table": live.table_name, "signing_keys": instance.verifier.key_ids,
                                 "projects": {name: sorted(p.keys) for name, p in live.projects.items()},
                                 "allowed_agents": sorted(live.allowed_agents)})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await instance.open()
        try:
            ready("switchboard ready")
            yield
        finally:
            await instance.close()

    async def webhook(request: Request) -> JSONResponse:
        settings, verifier = instance.settings, instance.verifier
        try:
            if not request.headers.get("authorization", "").strip():
                raise Unauthorized("missing Authorization token")
            check_content_type(request.headers.get("content-type"))
            body = await read_body(request, settings.max_body_bytes, settings.body_read_timeout_seconds)
            event, key = verifier.verify_signed(body, request.headers.get("authorization"))
        except WebhookRejected as exc:
            log.warning("webhook refused", extra={"status": exc.status, "error": str(exc)})
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

        correlation_id.set(event.id)
        try:
            async with asyncio.timeout(settings.webhook_budget_seconds):
                # The key that signed it is the project's: its LiveKit, its records, nobody else's.
                outcome = await instance.pipeline_for_key(key).handle(event)
        except TimeoutError:
            # A claim cut short stays CLAIMED under its lease; the re-delivery (or the
            # sweeper) takes it over and looks in LiveKit before creating again.
            log.error("webhook budget spent", extra={"budget_seconds": settings.webhook_budget_seconds})
            return _retry_later(settings, f"not handled within the {settings.webhook_budget_seconds:g} s budget")
        except StoreUnavailable as exc:
            log.error("dispatch log unavailable", extra={"error": str(exc)})
            return _retry_later(settings, f"dispatch log unavailable: {exc}")
        body_out: dict[str, Any] = {"event_id": event.id, **outcome.answer()}
        if outcome.retry:
            return _retry_later(settings, "not every agent could be dispatched yet", body_out)
        return JSONResponse(body_out)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def before_checkpoint(request: Request) -> JSONResponse:
        await instance.before_checkpoint()
        log.info("snapstart: clients closed for the snapshot")
        return JSONResponse({"status": "closed"})

    async def after_restore(request: Request) -> JSONResponse:
        await instance.after_restore()
        ready("switchboard restored")
        return JSONResponse({"status": "restored"})

    routes = [Route("/webhook", webhook, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])]
    # Only when Lambda Web Adapter is told to call them: nowhere else does anything POST there.
    if settings.snapstart_before_checkpoint_path:
        routes.append(Route(settings.snapstart_before_checkpoint_path, before_checkpoint, methods=["POST"]))
    if settings.snapstart_after_restore_path:
        routes.append(Route(settings.snapstart_after_restore_path, after_restore, methods=["POST"]))
    configure_logging(settings.log_level)
    return Starlette(routes=routes, lifespan=lifespan)


def _retry_later(settings: Settings, error: str, extra: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, **(extra or {})}, status_code=503,
                        headers={"Retry-After": str(settings.retry_after_seconds)})

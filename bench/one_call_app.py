"""The ceiling of any path that makes one DynamoDB call: bare_app plus the duplicate path's one call.

bench.webhook's `one call` case: read the body, make the call a re-delivery is answered
with (DynamoStore.replay_event, a conditional UpdateItem that succeeds, on the event
record named by BENCH_EVENT_PK and BENCH_EVENT_SK), answer JSON. No verification, no
decision, no log line: what it costs above bare is that one call through the handler's
own store (aioboto3, botocore, the codec), which is what bounds the duplicate case.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from handler.dynamo import DynamoStore
from handler.settings import Settings

KEY = (os.environ.get("BENCH_EVENT_PK", ""), os.environ.get("BENCH_EVENT_SK", ""))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with DynamoStore.open(Settings()) as store:
        app.state.store = store
        yield


async def webhook(request: Request) -> JSONResponse:
    await request.body()
    replay = await request.app.state.store.replay_event(*KEY)
    return JSONResponse({"replayed": replay is not None})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/webhook", webhook, methods=["POST"]), Route("/healthz", healthz)], lifespan=lifespan)

"""handler/dispatcher.py: how LiveKit's answers are sorted into retry-worthy and final.

The sorting decides exactly-once: an answer that does not say whether the call took
effect must be LiveKitUnavailable (503, re-delivered, the next owner looks in LiveKit
before creating), never LiveKitRejected (recorded as a failure for good, beside a
dispatch that may exist). Which answers LiveKit gives when busy cannot be produced on
demand from a real livekit-server, so a loopback server answers as Twirp does here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from handler.dispatcher import LiveKitDispatcher, LiveKitError, LiveKitRejected, LiveKitUnavailable
from handler.policy import PlannedDispatch, Rule
from handler.settings import Settings

pytestmark = pytest.mark.anyio

PLANNED = PlannedDispatch(room_sid="RM_1", room_name="r", agent_name="driver", rule=Rule.AGENTS,
                          trigger="room_started")


@pytest.fixture
async def twirp() -> AsyncIterator[tuple[list[tuple[int, str]], str]]:
    """A server that answers each request with the next (HTTP status, Twirp code) queued."""
    answers: list[tuple[int, str]] = []

    async def answer(_: web.Request) -> web.Response:
        status, code = answers.pop(0)
        return web.Response(status=status, content_type="application/json",
                            text=json.dumps({"code": code, "msg": f"twirp error: {code}"}))

    app = web.Application()
    app.router.add_post("/{path:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield answers, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def create_answered(twirp: tuple[list[tuple[int, str]], str], status: int, code: str) -> LiveKitError:
    """What CreateDispatch raises when LiveKit answers (status, code)."""
    answers, url = twirp
    answers.append((status, code))
    lk = LiveKitDispatcher(Settings(livekit_url=url, livekit_api_key="k",
                                    livekit_api_secret="a-secret-that-is-long-enough-for-hs256"))
    try:
        with pytest.raises(LiveKitError) as raised:
            await lk.create(PLANNED)
    finally:
        await lk.aclose()
    assert raised.value.status == status
    return raised.value


@pytest.mark.parametrize(("status", "code"), [
    (408, "deadline_exceeded"),  # a busy livekit-server's "request timed out" (seen in the soak)
    (408, "canceled"),
    (429, "resource_exhausted"),
    (500, "internal"),
    (503, "unavailable"),
])
async def test_an_answer_that_may_have_taken_effect_is_worth_a_retry(twirp, status, code):
    assert isinstance(await create_answered(twirp, status, code), LiveKitUnavailable)


@pytest.mark.parametrize(("status", "code"), [(401, "unauthenticated"), (403, "permission_denied"),
                                              (400, "invalid_argument"), (404, "not_found")])
async def test_a_refusal_is_final(twirp, status, code):
    assert isinstance(await create_answered(twirp, status, code), LiveKitRejected)

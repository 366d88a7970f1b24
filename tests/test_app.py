"""Every answer /webhook gives, against the running handler and the real servers behind it."""

from __future__ import annotations

import datetime
import json

import httpx
import pytest
from livekit import api

from handler.app import create_app
from handler.settings import Settings
from infra.stack import port_open
from tests.conftest import SECOND_KEY, SECOND_SECRET, SPARE_HANDLER_PORTS
from tests.livekit_helpers import lk_api, log_json, named_dispatches
from tests.webhooks import event, signed_request

pytestmark = pytest.mark.anyio


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=30)


@pytest.fixture
async def room(local_stack, room_name):
    """A real room on the local livekit-server, created without metadata so only our test events act on it."""
    async with lk_api(local_stack.livekit_url) as lk:
        created = await lk.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=60))
        yield created
        await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))


def drill_event(room, **kw):
    return event("room_started", room.name, room.sid, {"agents": [{"name": "driver"}]}, **kw)


async def assert_nothing_dispatched(local_stack, aws, room) -> None:
    async with lk_api(local_stack.livekit_url) as lk:
        assert await named_dispatches(lk, room.name) == []
    assert log_json(aws, "--room", room.name) == []


async def test_healthz(local_stack):
    response = httpx.get(f"{local_stack.ports.handler_url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize("case", ["missing", "garbage", "forged", "expired", "unknown key", "altered body"])
async def test_401_for_every_bad_token_and_nothing_is_dispatched(local_stack, aws, room, case):
    body, headers = signed_request(drill_event(room))
    if case == "missing":
        del headers["Authorization"]
    elif case == "garbage":
        headers["Authorization"] = "garbage"
    elif case == "forged":
        headers["Authorization"] = signed_request(body, secret="not-the-secret")[1]["Authorization"]
    elif case == "expired":
        headers["Authorization"] = signed_request(body, ttl=datetime.timedelta(seconds=-60))[1]["Authorization"]
    elif case == "unknown key":
        headers["Authorization"] = signed_request(body, key="stranger", secret="stranger-secret")[1]["Authorization"]
    elif case == "altered body":
        body = body.replace(b"driver", b"dispatcher")
        assert b"dispatcher" in body
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 401
    assert set(response.json()) == {"error"} and len(response.json()["error"]) < 100
    await assert_nothing_dispatched(local_stack, aws, room)


async def test_415_for_other_content_types(local_stack, aws, room):
    body, headers = signed_request(drill_event(room))
    response = post(local_stack.webhook_url, body, headers | {"Content-Type": "text/plain"})
    assert response.status_code == 415 and "text/plain" in response.json()["error"]
    await assert_nothing_dispatched(local_stack, aws, room)


async def test_413_for_a_declared_oversized_body(local_stack):
    body = b"x" * (1024 * 1024 + 1)
    _, headers = signed_request(body)
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 413


async def test_413_for_a_streamed_oversized_body_without_content_length(local_stack):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MiB in total, never declared

    _, headers = signed_request(b"irrelevant")
    response = httpx.post(local_stack.webhook_url, content=chunks(), headers=headers, timeout=30)
    assert response.status_code == 413


async def test_the_body_limit_stops_reading_the_stream_early():
    """Driven at the ASGI level, so we can count what the app pulled from the stream."""
    app = create_app(Settings(livekit_api_key="devkey", livekit_api_secret="secret"), store=object())
    pulled = 0

    async def receive():
        nonlocal pulled
        pulled += 65536
        return {"type": "http.request", "body": b"x" * 65536, "more_body": pulled < 64 * 1024 * 1024}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/webhook", "headers": [
        (b"authorization", b"token"), (b"content-type", b"application/webhook+json")],
        "query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("t", 80), "root_path": ""}
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert pulled <= 1024 * 1024 + 65536  # stopped at the limit, not after 64 MiB


async def test_400_for_a_signed_body_that_is_not_a_webhook_event(local_stack):
    body, headers = signed_request(b'{"hello": "world"}')
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 400 and "not a WebhookEvent" in response.json()["error"]


async def test_400_for_signed_invalid_utf8(local_stack):
    body, headers = signed_request(b'{"event": "room_started", "id": "\xff\xfe"}')
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 400 and "UTF-8" in response.json()["error"]


async def test_200_for_ignored_events_and_the_decision_is_recorded(local_stack, aws, room):
    body, headers = signed_request(event("track_published", room.name, room.sid))
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 200
    assert response.json()["decision"] == {"action": "ignore", "reason": "track_published events do not dispatch agents"}


async def test_200_for_malformed_metadata_with_the_pydantic_message(local_stack, aws, room):
    body, headers = signed_request(event("room_started", room.name, room.sid, '{"agents": [{"name": 7}]}'))
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 200
    decision = response.json()["decision"]
    assert decision["reason"] == "room metadata is invalid" and "Input should be a valid string" in decision["error"]
    await assert_nothing_dispatched(local_stack, aws, room)


async def test_200_and_one_dispatch_for_a_good_webhook(local_stack, aws, room):
    body, headers = signed_request(drill_event(room))
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"]["slots"][0]["result"] == "dispatched"
    async with lk_api(local_stack.livekit_url) as lk:
        dispatches = await named_dispatches(lk, room.name)
    assert [d.agent_name for d in dispatches] == ["driver"]
    assert json.loads(dispatches[0].metadata)["room_name"] == room.name
    [record] = log_json(aws, "--room", room.name)
    assert (record["status"], record["dispatch_id"]) == ("DISPATCHED", dispatches[0].id)


async def test_two_signing_keys_at_once(local_stack, aws, room):
    first = event("room_started", room.name, room.sid, {"agents": [{"name": "driver"}]})
    second = event("participant_joined", room.name, room.sid,
                   {"on_participant_joined": [{"name": "translator"}]},
                   participant={"identity": "alice", "kind": "STANDARD"})
    assert post(local_stack.webhook_url, *signed_request(first)).status_code == 200
    assert post(local_stack.webhook_url, *signed_request(second, key=SECOND_KEY, secret=SECOND_SECRET)).status_code == 200
    async with lk_api(local_stack.livekit_url) as lk:
        assert sorted(d.agent_name for d in await named_dispatches(lk, room.name)) == ["driver", "translator"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_503_with_retry_after_when_dynamodb_is_down(local_stack, aws, room):
    dead = free_port()
    assert not port_open(dead)
    port = SPARE_HANDLER_PORTS[0]
    local_stack.start_handler(port, "handler-no-dynamodb", AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{dead}")
    body, headers = signed_request(drill_event(room))
    response = post(f"http://127.0.0.1:{port}/webhook", body, headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert "dispatch log unavailable" in response.json()["error"]
    await assert_nothing_dispatched(local_stack, aws, room)


async def test_503_when_livekit_is_down_then_the_redelivery_dispatches_once(local_stack, aws, room):
    dead = free_port()
    port = SPARE_HANDLER_PORTS[1]
    local_stack.start_handler(port, "handler-no-livekit", LIVEKIT_URL=f"http://127.0.0.1:{dead}")
    body, headers = signed_request(drill_event(room))
    response = post(f"http://127.0.0.1:{port}/webhook", body, headers)
    assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
    [record] = log_json(aws, "--room", room.name)
    assert record["status"] == "FAILED" and "unreachable" in record["error"]
    # LiveKit re-sends the same body; this time LiveKit is reachable.
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 200, response.text
    async with lk_api(local_stack.livekit_url) as lk:
        assert [d.agent_name for d in await named_dispatches(lk, room.name)] == ["driver"]
    [record] = log_json(aws, "--room", room.name)
    assert (record["status"], record["attempts"]) == ("DISPATCHED", 2)

"""Every answer /webhook gives, against the running handler and the real servers behind it.

401 and 413 (and the other hostile requests) are in test_hostile.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from infra.stack import port_open
from tests.conftest import SECOND_KEY, SECOND_SECRET, SPARE_HANDLER_PORTS
from tests.livekit_helpers import assert_nothing_dispatched, lk_api, log_json, named_dispatches
from tests.webhooks import event, signed_request

pytestmark = pytest.mark.anyio


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=30)


def drill_event(room, **kw):
    return event("room_started", room.name, room.sid, {"agents": [{"name": "driver"}]}, **kw)


async def test_healthz(local_stack):
    response = httpx.get(f"{local_stack.ports.handler_url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_415_for_other_content_types(local_stack, aws, room):
    body, headers = signed_request(drill_event(room))
    response = post(local_stack.webhook_url, body, headers | {"Content-Type": "text/plain"})
    assert response.status_code == 415 and "text/plain" in response.json()["error"]
    await assert_nothing_dispatched(local_stack, aws, room)


async def test_400_for_a_signed_body_that_is_not_a_webhook_event(local_stack):
    body, headers = signed_request(b'{"hello": "world"}')
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 400 and "not a WebhookEvent" in response.json()["error"]


async def test_200_for_ignored_events_at_once(local_stack, aws, room):
    # Answered from the event's type alone, with no record (tests/test_event_path.py).
    body, headers = signed_request(event("track_published", room.name, room.sid))
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 200
    decision = response.json()["decision"]
    assert decision["action"] == "ignore"
    assert decision["reason"].startswith("track_published events cannot change a decision: ")


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

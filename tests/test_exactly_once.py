"""The same event, delivered many times, in sequence and at once, through two handler processes: one dispatch."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import SECOND_HANDLER_PORT
from tests.livekit_helpers import lk_api, log_json, named_dispatches
from tests.webhooks import event, participant, signed_request

pytestmark = pytest.mark.anyio

METADATA = {"agents": [{"name": "dispatcher"}, {"name": "driver"}],
            "on_participant_joined": [{"name": "translator", "per": "participant"},
                                      {"name": "assistant", "per": "room"}]}


@pytest.fixture(scope="module")
def second_handler(local_stack):
    service = local_stack.start_handler(SECOND_HANDLER_PORT, "handler-2")
    yield f"http://127.0.0.1:{SECOND_HANDLER_PORT}/webhook"
    service.stop()


async def dispatch_counts(local_stack, room) -> dict[str, int]:
    async with lk_api(local_stack.livekit_url) as lk:
        counts: dict[str, int] = {}
        for d in await named_dispatches(lk, room.name):
            counts[d.agent_name] = counts.get(d.agent_name, 0) + 1
        return counts


async def deliver_until_accepted(client: httpx.AsyncClient, url: str, body: bytes, headers: dict) -> list[int]:
    """What LiveKit does: re-send the same body on 5xx, a bounded number of times."""
    codes = []
    for _ in range(20):
        response = await client.post(url, content=body, headers=headers)
        codes.append(response.status_code)
        if response.status_code != 503:
            break
        await asyncio.sleep(0.5)
    return codes


async def test_sequential_redeliveries_dispatch_once(local_stack, aws, room):
    body, headers = signed_request(event("room_started", room.name, room.sid, METADATA))
    async with httpx.AsyncClient(timeout=30) as client:
        codes = [(await client.post(local_stack.webhook_url, content=body, headers=headers)).status_code
                 for _ in range(5)]
    assert codes == [200] * 5
    assert await dispatch_counts(local_stack, room) == {"dispatcher": 1, "driver": 1}
    records = log_json(aws, "--room", room.name)
    assert sorted((r["agent_name"], r["status"], r["attempts"]) for r in records) == [
        ("dispatcher", "DISPATCHED", 1), ("driver", "DISPATCHED", 1)]


async def test_concurrent_deliveries_through_two_processes_dispatch_once(local_stack, aws, room, second_handler):
    room_started = signed_request(event("room_started", room.name, room.sid, METADATA))
    alice_joined = signed_request(event("participant_joined", room.name, room.sid, METADATA,
                                        participant=participant("alice")))
    bob_joined = signed_request(event("participant_joined", room.name, room.sid, METADATA,
                                      participant=participant("bob", "sip")))
    urls = [local_stack.webhook_url, second_handler]
    deliveries = [(urls[i % 2], *req) for i in range(10) for req in (room_started, alice_joined, bob_joined)]
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:
        results = await asyncio.gather(*(deliver_until_accepted(client, url, body, headers)
                                         for url, body, headers in deliveries))
    assert all(codes[-1] == 200 for codes in results), results
    assert await dispatch_counts(local_stack, room) == {"dispatcher": 1, "driver": 1, "translator": 2, "assistant": 1}
    records = log_json(aws, "--room", room.name)
    slots = sorted((r["agent_name"], r["participant_identity"]) for r in records)
    assert slots == [("assistant", ""), ("dispatcher", ""), ("driver", ""), ("translator", "alice"),
                     ("translator", "bob")]
    assert {r["status"] for r in records} == {"DISPATCHED"}


async def test_an_agent_participant_joining_dispatches_nothing(local_stack, aws, room):
    agent = participant("agent-AJ_x", "agent", {"lk.agent_name": "translator"})
    body, headers = signed_request(event("participant_joined", room.name, room.sid, METADATA, participant=agent))
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(local_stack.webhook_url, content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["decision"]["action"] == "confirm_join"
    assert await dispatch_counts(local_stack, room) == {}
    assert log_json(aws, "--room", room.name) == []

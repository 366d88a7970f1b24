"""A burst of rooms through the real livekit-server, with real agent workers: every agent joins exactly once.

`make test` runs a small burst; `make soak` runs it with SWITCHBOARD_LOAD_ROOMS=200.

The sweeper runs beside the handler, as it does in production. It has real work
under a burst: a worker too busy to answer livekit-server's job request within
10 s loses that job, and LiveKit tells no one. The promise is that every agent
still joins exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections import Counter

import httpx
import pytest
from livekit import api

from handler.pipeline import open_pipeline
from handler.settings import Settings
from handler.sweeper import Sweeper
from tests.livekit_helpers import eventually, lk_api, log_json, named_dispatches
from tests.webhooks import event, participant, signed_request

pytestmark = pytest.mark.anyio
ROOMS = int(os.environ.get("SWITCHBOARD_LOAD_ROOMS", "12"))
# Worker processes per agent name; the soak spreads 400 agents over several.
WORKERS = int(os.environ.get("SWITCHBOARD_LOAD_WORKERS", "1"))
AGENTS = ("dispatcher", "driver")
METADATA = json.dumps({"agents": [{"name": name} for name in AGENTS]})


@pytest.fixture(scope="module")
def workers(local_stack):
    started = [local_stack.start_test_agent(name, name=f"load-{name}-{i}", tag_dispatch=True)
               for name in AGENTS for i in range(WORKERS)]
    yield
    for worker in started:
        worker.stop()


@pytest.fixture
async def sweeping(local_stack, aws, monkeypatch):
    """`switchboard sweep --every 2s`, in-process, for the length of a test."""
    for key, value in local_stack.env.items():
        monkeypatch.setenv(key, value)
    # Past livekit-server's own 10 s wait for a worker to take a job.
    settings = Settings(confirm_deadline_seconds=12, max_dispatch_attempts=5)
    reports: list = []

    async def loop(sweeper: Sweeper) -> None:
        while True:
            reports.append(await sweeper.sweep())
            await asyncio.sleep(2)

    async with open_pipeline(settings) as pipeline:
        task = asyncio.create_task(loop(Sweeper(pipeline)))
        yield reports
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def create_rooms(lk: api.LiveKitAPI, prefix: str) -> dict[str, str]:
    gate = asyncio.Semaphore(16)

    async def create(i: int) -> tuple[str, str]:
        async with gate:
            room = await lk.room.create_room(api.CreateRoomRequest(
                name=f"{prefix}-{i:03d}", metadata=METADATA, empty_timeout=300))
            return room.name, room.sid

    return dict(await asyncio.gather(*(create(i) for i in range(ROOMS))))


async def all_joined(aws, prefix: str) -> list[dict] | None:
    records = [r for r in log_json(aws, "--since", "30m", "--limit", "100000") if r["room_name"].startswith(prefix)]
    joined = [r for r in records if r["status"] == "JOINED"]
    return records if len(joined) >= ROOMS * len(AGENTS) else None


async def check_exactly_once(local_stack, lk: api.LiveKitAPI, aws, rooms: dict[str, str], prefix: str) -> None:
    records = await eventually(lambda: all_joined(aws, prefix), timeout=180 + ROOMS * 2, interval=2)
    per_room = Counter((r["room_name"], r["agent_name"]) for r in records)
    assert set(per_room.values()) == {1} and len(per_room) == ROOMS * len(AGENTS)
    assert {r["status"] for r in records} == {"JOINED"}
    by_id = {r["dispatch_id"]: r for r in records}
    gate = asyncio.Semaphore(16)

    async def livekit_view(name: str) -> tuple[list, list]:
        async with gate:
            dispatches = await named_dispatches(lk, name)
            people = (await lk.room.list_participants(api.ListParticipantsRequest(room=name))).participants
            return dispatches, people

    views = await asyncio.gather(*(livekit_view(name) for name in rooms))
    for (name, sid), (dispatches, people) in zip(rooms.items(), views):
        assert sorted(d.agent_name for d in dispatches) == sorted(AGENTS), name
        assert all(by_id[d.id]["room_sid"] == sid for d in dispatches)
        agents = sorted(p.attributes.get("lk.agent_name", "") for p in people)
        assert agents == sorted(AGENTS), (name, agents)
        assert {p.identity for p in people} == {by_id[d.id]["agent_identity"] for d in dispatches}


async def delete_rooms(lk: api.LiveKitAPI, rooms: dict[str, str]) -> None:
    gate = asyncio.Semaphore(16)

    async def delete(name: str) -> None:
        async with gate:
            await lk.room.delete_room(api.DeleteRoomRequest(room=name))

    await asyncio.gather(*(delete(name) for name in rooms))


async def test_a_burst_of_rooms_gets_every_agent_exactly_once(local_stack, aws, workers, sweeping):
    prefix = f"load-{uuid.uuid4().hex[:6]}"
    async with lk_api(local_stack.livekit_url) as lk:
        rooms = await create_rooms(lk, prefix)
        try:
            await check_exactly_once(local_stack, lk, aws, rooms, prefix)
        finally:
            await delete_rooms(lk, rooms)


async def test_duplicate_and_out_of_order_deliveries_mixed_in(local_stack, aws, workers, sweeping):
    """Beside LiveKit's own webhooks: a person's join arriving before room_started, copies of
    room_started (same id and fresh ids), and an agent join from some other dispatch."""
    prefix = f"mixed-{uuid.uuid4().hex[:6]}"
    async with lk_api(local_stack.livekit_url) as lk, httpx.AsyncClient(timeout=60) as client:
        rooms = await create_rooms(lk, prefix)
        try:
            deliveries = []
            for name, sid in rooms.items():
                person_first = event("participant_joined", name, sid, METADATA, participant=participant("early"))
                stranger = event("participant_joined", name, sid, METADATA, participant=participant(
                    f"agent-{sid}", "agent", {"lk.agent_name": "driver", "switchboard.dispatch_id": "AD_elsewhere"}))
                same_id = event("room_started", name, sid, METADATA)
                deliveries += [person_first, stranger, same_id, same_id, event("room_started", name, sid, METADATA)]
            gate = asyncio.Semaphore(16)

            async def deliver(body: dict) -> int:
                async with gate:
                    for _ in range(20):  # as LiveKit does: re-send on 503
                        content, headers = signed_request(body)
                        response = await client.post(local_stack.webhook_url, content=content, headers=headers)
                        if response.status_code != 503:
                            return response.status_code
                        await asyncio.sleep(0.5)
                    return response.status_code

            codes = await asyncio.gather(*(deliver(body) for body in deliveries))
            assert set(codes) == {200}
            await check_exactly_once(local_stack, lk, aws, rooms, prefix)
        finally:
            await delete_rooms(lk, rooms)

"""An agent whose worker dies mid-call is dispatched again, once, while people are still in the room."""

from __future__ import annotations

import json
import signal

import pytest
from livekit import api, rtc

from infra.stack import DEV_API_KEY, DEV_API_SECRET
from tests.livekit_helpers import eventually, lk_api, log_json, named_dispatches

pytestmark = pytest.mark.anyio


def driver_record(aws, room):
    return next((r for r in log_json(aws, "--room", room) if r["agent_name"] == "driver"), {})


async def test_a_crashed_agent_is_replaced_once(local_stack, aws, room_name):
    first = local_stack.start_test_agent("driver", name="agent-driver-doomed")
    second = None
    person = rtc.Room()
    try:
        async with lk_api(local_stack.livekit_url) as lk:
            await lk.room.create_room(api.CreateRoomRequest(
                name=room_name, metadata=json.dumps({"agents": [{"name": "driver"}]}), empty_timeout=60))
            token = (api.AccessToken(DEV_API_KEY, DEV_API_SECRET).with_identity("caller")
                     .with_grants(api.VideoGrants(room_join=True, room=room_name)).to_jwt())
            await person.connect(local_stack.livekit_url.replace("http", "ws"), token)
            joined = await eventually(lambda: (r := driver_record(aws, room_name)).get("status") == "JOINED" and r,
                                      timeout=60)
            crashed_identity = joined["agent_identity"]

            second = local_stack.start_test_agent("driver", name="agent-driver-standby")
            first.signal(signal.SIGKILL)  # no goodbye: the worker process just dies

            replaced = await eventually(
                lambda: (r := driver_record(aws, room_name)).get("status") == "JOINED"
                and r.get("agent_identity") != crashed_identity and r, timeout=90)
            assert replaced["attempts"] == 2
            dispatches = [d for d in await named_dispatches(lk, room_name) if d.agent_name == "driver"]
            assert [d.id for d in dispatches] == [replaced["dispatch_id"]]
            participants = (await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))).participants
            agents = [p.identity for p in participants if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT]
            assert agents == [replaced["agent_identity"]]
            await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
    finally:
        await person.disconnect()
        first.stop()
        if second:
            second.stop()

"""End to end on the real stack: LiveKit's own webhooks, real agent workers, a real participant.

CLAIMED → DISPATCHED → JOINED → ENDED, observed through `switchboard logs --json`
and LiveKit's ListDispatch, with nothing simulated.
"""

from __future__ import annotations

import json

import pytest
from livekit import api, rtc

from infra.stack import DEV_API_KEY, DEV_API_SECRET
from tests.livekit_helpers import eventually, lk_api, log_json, named_dispatches, switchboard

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def agents(local_stack):
    workers = [local_stack.start_test_agent(name) for name in ("driver", "translator")]
    yield
    for worker in workers:
        worker.stop()


def by_slot(records):
    return {(r["agent_name"], r["participant_identity"]): r for r in records}


async def test_room_agents_and_participant_agents_join_and_end(local_stack, aws, agents, room_name):
    metadata = {"agents": [{"name": "driver", "metadata": {"persona": "Chris"}}],
                "on_participant_joined": [{"name": "translator", "per": "participant", "metadata": {"lang": "fr"}}]}
    async with lk_api(local_stack.livekit_url) as lk:
        room = await lk.room.create_room(api.CreateRoomRequest(
            name=room_name, metadata=json.dumps(metadata), empty_timeout=60))

        # LiveKit's own room_started webhook → the driver dispatched → the worker joins.
        joined = await eventually(lambda: [r for r in log_json(aws, "--room", room_name)
                                           if r["agent_name"] == "driver" and r["status"] == "JOINED"], timeout=60)
        driver = joined[0]
        assert driver["trigger"] == "room_started" and driver["room_sid"] == room.sid
        assert driver["dispatched_at"] <= driver["joined_at"]
        assert driver["agent_identity"]

        # A real person joins with the rtc SDK → the per-participant translator.
        token = (api.AccessToken(DEV_API_KEY, DEV_API_SECRET).with_identity("alice")
                 .with_grants(api.VideoGrants(room_join=True, room=room_name)).to_jwt())
        person = rtc.Room()
        await person.connect(local_stack.livekit_url.replace("http", "ws"), token)
        try:
            records = await eventually(lambda: (lambda s: s if s.get(("translator", "alice"), {}).get("status")
                                                == "JOINED" else None)(by_slot(log_json(aws, "--room", room_name))),
                                       timeout=60)
            translator = records[("translator", "alice")]
            assert translator["trigger"] == "participant_joined" and translator["rule"] == "on_participant_joined"
            job = json.loads(translator["job_metadata"])
            assert job["lang"] == "fr" and job["participant_identity"] == "alice"

            # The agents' own joins confirmed dispatches and created none.
            dispatches = await named_dispatches(lk, room_name)
            assert sorted(d.agent_name for d in dispatches) == ["driver", "translator"]
            assert {d.id for d in dispatches} == {driver["dispatch_id"], translator["dispatch_id"]}
            identities = {p.identity for p in (await lk.room.list_participants(
                api.ListParticipantsRequest(room=room_name))).participants}
            assert {"alice", driver["agent_identity"], translator["agent_identity"]} <= identities
        finally:
            await person.disconnect()

        # room_finished → every open dispatch ENDED.
        await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
        records = await eventually(lambda: (lambda rs: rs if rs and all(r["status"] == "ENDED" for r in rs) else None)(
            log_json(aws, "--room", room_name)), timeout=60)
        assert all(r["ended_at"] >= r["joined_at"] for r in records)

    # The timeline tells the whole story, in order.
    done = switchboard("explain", "--room", room_name, "--json", env=aws)
    assert done.returncode == 0, done.stderr
    steps = [s["what"] for s in json.loads(done.stdout)]
    assert steps.index("driver CLAIMED") < steps.index("driver DISPATCHED") < steps.index("driver JOINED") \
        < steps.index("driver ENDED")
    assert steps.index("translator for alice JOINED") < steps.index("translator for alice ENDED")
    assert "room_started" in steps and "room_finished" in steps

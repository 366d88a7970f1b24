"""An agent that leaves: its slot ends if it meant to go; otherwise the room gets it back while it wants it.

Driven through the real handler, livekit-server and DynamoDB Local. No worker runs
for "translator" here, so each dispatch stays DISPATCHED until the test says who
joined: LiveKit's own join and leave webhooks are signed and sent as it would.
(Over ~300 lines: one test per way an agent leaves, and they share the room harness above them.)
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from livekit import api

from handler.observability import Metrics
from handler.pipeline import open_pipeline
from handler.settings import Settings
from handler.sweeper import Sweeper
from tests.livekit_helpers import eventually, lk_api, log_json, named_dispatches
from tests.webhooks import event, participant, signed_request

pytestmark = pytest.mark.anyio
ROOM_AGENT = {"agents": [{"name": "translator"}]}


def slot(aws, room_name: str, agent: str = "translator") -> dict:
    return next((r for r in log_json(aws, "--room", room_name) if r["agent_name"] == agent), {})


class Room:
    """A real room whose translator slot the test joins and leaves with signed webhooks."""

    def __init__(self, local_stack, aws, lk: api.LiveKitAPI, client: httpx.AsyncClient, info: api.Room) -> None:
        self.local_stack, self.aws, self.lk, self.client, self.info = local_stack, aws, lk, client, info
        # LiveKit's leave names the same participant session (sid) as its join did.
        self.sids: dict[str, str] = {}

    @property
    def name(self) -> str:
        return self.info.name

    async def send(self, body: dict) -> httpx.Response:
        content, headers = signed_request(body)
        return await self.client.post(self.local_stack.webhook_url, content=content, headers=headers)

    async def agent_joins(self, agent: str = "translator") -> str:
        """An agent of the slot's current dispatch joins; its identity."""
        record = await eventually(lambda: (r := slot(self.aws, self.name, agent)).get("status") == "DISPATCHED" and r)
        identity = f"agent-AJ_{uuid.uuid4().hex[:8]}"
        joining = participant(identity, "agent", {"lk.agent_name": agent, "switchboard.dispatch_id": record["dispatch_id"]})
        self.sids[identity] = joining["sid"]
        response = await self.send(event("participant_joined", self.name, self.info.sid, self.info.metadata,
                                         participant=joining))
        assert response.status_code == 200, response.text
        assert slot(self.aws, self.name, agent)["status"] == "JOINED"
        return identity

    async def agent_leaves(self, identity: str, reason: str, agent: str = "translator",
                           done: str = "") -> httpx.Response:
        attributes = {"lk.agent_name": agent} | ({"switchboard.done": done} if done else {})
        leaving = participant(identity, "agent", attributes) | {"disconnectReason": reason}
        if identity in self.sids:
            leaving["sid"] = self.sids[identity]
        return await self.send(event("participant_left", self.name, self.info.sid, self.info.metadata,
                                     participant=leaving))

    async def dispatch_ids(self, agent: str = "translator") -> list[str]:
        return sorted(d.id for d in await named_dispatches(self.lk, self.name) if d.agent_name == agent)


@pytest.fixture
async def room(local_stack, aws, room_name):
    """A room created with metadata that asks for a translator: LiveKit's room_started dispatches it."""
    async with lk_api(local_stack.livekit_url) as lk, httpx.AsyncClient(timeout=30) as client:
        info = await lk.room.create_room(api.CreateRoomRequest(
            name=room_name, metadata=json.dumps(ROOM_AGENT), empty_timeout=120))
        yield Room(local_stack, aws, lk, client, info)
        await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))


async def test_an_agent_that_says_it_is_done_ends_its_slot(room, aws):
    identity = await room.agent_joins()
    before = await room.dispatch_ids()

    response = await room.agent_leaves(identity, "CLIENT_INITIATED", done="the call is over")

    assert response.status_code == 200
    record = slot(aws, room.name)
    assert record["status"] == "ENDED" and record["attempts"] == 1
    assert record["reason"] == f"agent {identity} left as intended (CLIENT_INITIATED: the call is over)"
    assert await room.dispatch_ids() == before
    # A later copy of the same news changes nothing.
    assert (await room.agent_leaves(identity, "CLIENT_INITIATED", done="the call is over")).status_code == 200
    assert slot(aws, room.name)["status"] == "ENDED"


async def test_an_agent_removed_by_an_operator_ends_its_slot(room, aws):
    identity = await room.agent_joins()

    await room.agent_leaves(identity, "PARTICIPANT_REMOVED")

    record = slot(aws, room.name)
    assert record["status"] == "ENDED" and record["reason"] == f"agent {identity} left as intended (PARTICIPANT_REMOVED)"


async def test_an_agent_removed_in_place_of_the_stuck_session_the_sweeper_meant_is_dispatched_again(room, aws,
                                                                                                   sweeper):
    """RemoveParticipant takes an identity: if a never-active session under it leaves, and a new
    agent takes it, between the sweeper's last look and its removal, LiveKit removes the new
    agent. The sweeper notes the sid it means first; any other session's PARTICIPANT_REMOVED
    under that identity is then nobody's intent, and the slot gets an agent again."""
    identity = await room.agent_joins()
    await sweeper.store.note_removal(room.info.sid, identity, "PA_neveractive")

    response = await room.agent_leaves(identity, "PARTICIPANT_REMOVED")

    assert response.status_code == 200, response.text
    record = slot(aws, room.name)
    assert record["status"] == "DISPATCHED" and record["attempts"] == 2, record
    assert record["redispatch_reason"] == (f"agent {identity} was removed in place of the never-active session "
                                           f"PA_neveractive the sweeper removed under its identity")
    assert len(await room.dispatch_ids()) == 1


async def test_a_removal_the_sweeper_meant_for_another_identity_still_ends_an_operators_removal(room, aws, sweeper):
    identity = await room.agent_joins()
    await sweeper.store.note_removal(room.info.sid, "someone-else", "PA_neveractive")

    await room.agent_leaves(identity, "PARTICIPANT_REMOVED")

    assert slot(aws, room.name)["status"] == "ENDED"


async def test_an_agent_whose_job_is_shut_down_under_it_is_dispatched_again(room, aws):
    """A worker shutting down, or a job LiveKit has ended, disconnects its agent "client
    initiated" too; without switchboard.done that is not the agent's intent."""
    identity = await room.agent_joins()

    await room.agent_leaves(identity, "CLIENT_INITIATED")

    record = slot(aws, room.name)
    assert record["status"] == "DISPATCHED" and record["attempts"] == 2
    assert record["redispatch_reason"] == f"agent {identity} left (CLIENT_INITIATED)"


async def test_an_agent_that_drops_out_of_a_room_awaiting_its_people_is_dispatched_again(room, aws):
    """Nobody has joined yet, but the room is open and its metadata asks for the agent."""
    identity = await room.agent_joins()
    [first] = await room.dispatch_ids()

    response = await room.agent_leaves(identity, "SIGNAL_CLOSE")

    assert response.status_code == 200
    record = slot(aws, room.name)
    assert record["status"] == "DISPATCHED" and record["attempts"] == 2
    assert record["redispatch_reason"] == f"agent {identity} left (SIGNAL_CLOSE)"
    # The stale dispatch went before the new one came: one translator dispatch.
    assert await room.dispatch_ids() == [record["dispatch_id"]] != [first]


async def test_an_agent_that_keeps_dropping_out_fails_once_its_attempts_are_used(room, aws):
    attempts = Settings.model_fields["max_dispatch_attempts"].default  # the handler runs with it
    for _ in range(attempts - 1):
        await room.agent_leaves(await room.agent_joins(), "CONNECTION_TIMEOUT")
    last = await room.agent_joins()

    await room.agent_leaves(last, "CONNECTION_TIMEOUT")

    record = slot(aws, room.name)
    assert record["status"] == "FAILED" and record["attempts"] == attempts
    assert record["error"] == f"agent {last} left (CONNECTION_TIMEOUT); gave up after {attempts} attempt(s)"
    assert len(await room.dispatch_ids()) == 1


async def test_an_agent_the_metadata_no_longer_asks_for_is_not_brought_back(room, aws):
    identity = await room.agent_joins()
    await room.lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room.name, metadata="{}"))

    await room.agent_leaves(identity, "SIGNAL_CLOSE")

    record = slot(aws, room.name)
    assert record["status"] == "ENDED" and record["attempts"] == 1
    assert record["reason"] == (f"agent {identity} left (SIGNAL_CLOSE); not dispatched again: "
                                "the room's metadata no longer asks for DISPATCH#translator")


async def test_an_agent_whose_participant_has_gone_is_not_brought_back(room, aws):
    per_caller = {"on_participant_joined": [{"name": "translator", "per": "participant"}]}
    await room.lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(
        room=room.name, metadata=json.dumps(per_caller)))
    room.info.metadata = json.dumps(per_caller)
    # The caller's join (forged: nobody is really there) brings a translator for them.
    await room.send(event("participant_joined", room.name, room.info.sid, per_caller,
                          participant=participant("caller")))
    mine = await eventually(lambda: [r for r in log_json(aws, "--room", room.name)
                                     if r["participant_identity"] == "caller" and r["status"] == "DISPATCHED"])
    identity = f"agent-AJ_{uuid.uuid4().hex[:8]}"
    joining = participant(identity, "agent", {"lk.agent_name": "translator", "switchboard.dispatch_id": mine[0]["dispatch_id"]})
    room.sids[identity] = joining["sid"]
    await room.send(event("participant_joined", room.name, room.info.sid, per_caller, participant=joining))

    await room.agent_leaves(identity, "SIGNAL_CLOSE")

    [record] = [r for r in log_json(aws, "--room", room.name) if r["participant_identity"] == "caller"]
    assert record["status"] == "ENDED"
    assert record["reason"].endswith("not dispatched again: caller has left too")


async def test_an_agent_of_an_earlier_session_is_not_brought_back_into_the_new_one(room, aws, local_stack):
    """The room name is open again under a new sid: re-dispatching by name would put the old
    session's agent into the new one."""
    old = Room(local_stack, aws, room.lk, room.client, api.Room(
        name=room.name, sid=f"RM_old{uuid.uuid4().hex[:8]}", metadata=json.dumps(ROOM_AGENT)))
    await old.send(event("room_started", old.name, old.info.sid, ROOM_AGENT))
    old_record = await eventually(lambda: [r for r in log_json(aws, "--room", room.name)
                                           if r["room_sid"] == old.info.sid and r["status"] == "DISPATCHED"])
    identity = f"agent-AJ_{uuid.uuid4().hex[:8]}"
    joining = participant(identity, "agent", {"lk.agent_name": "translator", "switchboard.dispatch_id": old_record[0]["dispatch_id"]})
    old.sids[identity] = joining["sid"]
    await old.send(event("participant_joined", old.name, old.info.sid, ROOM_AGENT, participant=joining))
    before = await room.dispatch_ids()

    await old.agent_leaves(identity, "SIGNAL_CLOSE")

    [record] = [r for r in log_json(aws, "--room", room.name) if r["room_sid"] == old.info.sid]
    assert record["status"] == "ENDED"
    assert record["reason"].endswith("not dispatched again: the room session is over")
    assert await room.dispatch_ids() == before


async def test_a_reconnect_under_the_same_identity_keeps_the_slot(room, aws):
    identity = await room.agent_joins()

    await room.agent_leaves(identity, "DUPLICATE_IDENTITY")

    record = slot(aws, room.name)
    assert record["status"] == "JOINED" and record["agent_identity"] == identity


@pytest.fixture
async def sweeper(local_stack, aws, monkeypatch):
    for key, value in local_stack.env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(missing_agent_grace_seconds=2)
    async with open_pipeline(settings) as pipeline:
        yield Sweeper(pipeline)


async def test_the_sweeper_replaces_an_agent_whose_leave_webhook_never_came(room, aws, sweeper):
    identity = await room.agent_joins()  # recorded JOINED, but no such participant is in the room

    first = await sweeper.sweep()
    assert [d["action"] for d in first.details if d.get("room_name") == room.name] == ["agent_missing"]
    assert slot(aws, room.name)["missing_since"]
    await asyncio.sleep(2.5)
    second = await sweeper.sweep()

    assert [d["action"] for d in second.details if d.get("room_name") == room.name] == ["missing_agent_redispatched"]
    record = slot(aws, room.name)
    assert record["status"] == "DISPATCHED" and record["attempts"] == 2 and record["missing_since"] == ""
    assert record["redispatch_reason"] == (f"agent {identity} left the room and its participant_left "
                                           "webhook never came")
    assert await room.dispatch_ids() == [record["dispatch_id"]]


async def test_a_leave_handled_by_the_webhook_and_the_sweeper_at_once_is_replaced_once(room, aws, sweeper):
    identity = await room.agent_joins()
    joined = next(r for r in (await sweeper.store.load_slots(room.info.sid)).values())

    webhook, swept = await asyncio.gather(
        room.agent_leaves(identity, "SIGNAL_CLOSE"),
        sweeper.presence.replace_agent(joined, "a racing sweep", "sweep-test", Metrics()),
    )

    record = slot(aws, room.name)
    assert record["status"] in ("CLAIMED", "DISPATCHED") and record["attempts"] == 2
    await eventually(lambda: slot(aws, room.name)["status"] == "DISPATCHED")
    assert await room.dispatch_ids() == [slot(aws, room.name)["dispatch_id"]]
    assert webhook.status_code in (200, 503) and swept.result in ("redispatched", "duplicate", "in_progress")


async def test_an_agent_whose_connection_aborts_is_dispatched_again(local_stack, aws, room_name):
    """LiveKit ends the job of an agent participant that leaves, however far it got: the slot
    is replaced on the participant_connection_aborted webhook, before the agent ever joined.

    The abort itself is signed here (the soak produces it for real under load); the job,
    its assignment, the stale dispatch's deletion and the new agent's join are real.
    """
    # Its agents join 30 s after accepting: time enough, on a loaded machine, to send the abort
    # while the first job's agent has not connected (a later connection would be another sid).
    worker = local_stack.start_test_agent("translator", name="agent-translator-slow", tag_dispatch=True,
                                          join_delay=30)
    try:
        async with lk_api(local_stack.livekit_url) as lk, httpx.AsyncClient(timeout=30) as client:
            info = await lk.room.create_room(api.CreateRoomRequest(
                name=room_name, metadata=json.dumps(ROOM_AGENT), empty_timeout=120))
            room = Room(local_stack, aws, lk, client, info)

            async def assigned_job():
                return next((j.state.participant_identity for d in await named_dispatches(lk, room_name)
                             for j in d.state.jobs if j.state.participant_identity), None)

            doomed = await eventually(assigned_job, timeout=30)
            first = slot(aws, room_name)
            assert first["status"] == "DISPATCHED"
            aborted = participant(doomed, "agent", {"lk.agent_name": "translator"}) | {
                "disconnectReason": "SIGNAL_CLOSE"}
            response = await room.send(event("participant_connection_aborted", room_name, info.sid, ROOM_AGENT,
                                              participant=aborted))
            assert response.status_code == 200, response.text

            replaced = slot(aws, room_name)
            assert replaced["attempts"] == 2 and replaced["dispatch_id"] != first["dispatch_id"]
            assert replaced["redispatch_reason"] == f"agent {doomed} could not connect (SIGNAL_CLOSE)"
            joined = await eventually(lambda: (r := slot(aws, room_name)).get("status") == "JOINED" and r, timeout=60)
            assert joined["agent_identity"] != doomed
            assert await room.dispatch_ids() == [joined["dispatch_id"]]
            people = (await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))).participants
            assert [p.identity for p in people if p.attributes.get("lk.agent_name")] == [joined["agent_identity"]]
            await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
    finally:
        worker.stop()

"""Hostile but ordinary schedules: each once doubled an agent, removed a healthy one, or lost one.

Every test drives the real Pipeline, Sweeper and DynamoStore against DynamoDB Local
and the real livekit-server, in this process so the test chooses the order of the
steps. Where a step needs a fault, toxiproxy produces it for real (a slow
CreateDispatch, a DynamoDB answer that arrives after botocore gave up on it).
Webhooks LiveKit would send are built as it builds them and handed to the pipeline;
no worker runs for "translator", so its dispatches wait until a test says who joined.
(Over ~300 lines: one test per schedule of the hostile review, issue 12's list, in its order.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.json_format import Parse
from livekit import api
from livekit.protocol.webhook import WebhookEvent

from handler.claims import Status
from handler.dynamo import DynamoStore
from handler.observability import Metrics
from handler.pipeline import Pipeline, open_pipeline
from handler.policy import PlannedDispatch, Rule
from handler.records import SlotRecord
from handler.settings import Settings
from handler.sweeper import Sweeper
from tests.livekit_helpers import eventually, lk_api, named_dispatches
from tests.webhooks import event, participant

pytestmark = pytest.mark.anyio
ROOM_AGENT = {"agents": [{"name": "translator"}]}
PER_CALLER = {"on_participant_joined": [{"name": "translator", "per": "participant"}]}
ALLOWED = frozenset({"dispatcher", "driver", "translator", "assistant", "stayer"})


@pytest.fixture
def env(local_stack, aws, monkeypatch) -> dict[str, str]:
    for key, value in local_stack.env.items():
        monkeypatch.setenv(key, value)
    return local_stack.env


def settings(**overrides: Any) -> Settings:
    return Settings(**({"allowed_agents": ALLOWED, "confirm_deadline_seconds": 0.2} | overrides))


@contextlib.asynccontextmanager
async def pipeline(**overrides: Any) -> AsyncIterator[Pipeline]:
    async with open_pipeline(settings(**overrides)) as opened:
        yield opened


def webhook(body: dict[str, Any]) -> WebhookEvent:
    return Parse(json.dumps(body), WebhookEvent(), ignore_unknown_fields=True)


class LiveRoom:
    """A real room whose metadata is set after it started (no webhook announces that), so only the test acts on it."""

    def __init__(self, lk: api.LiveKitAPI, info: api.Room, metadata: dict[str, Any]) -> None:
        self.lk, self.info, self.metadata = lk, info, json.dumps(metadata)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def sid(self) -> str:
        return self.info.sid

    def started(self, **kw: Any) -> WebhookEvent:
        return webhook(event("room_started", self.name, self.sid, self.metadata, **kw))

    def finished(self) -> WebhookEvent:
        return webhook(event("room_finished", self.name, self.sid, self.metadata))

    def joined(self, who: dict[str, Any], **kw: Any) -> WebhookEvent:
        return webhook(event("participant_joined", self.name, self.sid, self.metadata, participant=who, **kw))

    def left(self, who: dict[str, Any], reason: str = "CONNECTION_TIMEOUT", **kw: Any) -> WebhookEvent:
        return webhook(event("participant_left", self.name, self.sid, self.metadata,
                             participant=who | {"disconnectReason": reason}, **kw))

    async def dispatches(self, agent: str = "translator") -> list[Any]:
        return [d for d in await named_dispatches(self.lk, self.name) if d.agent_name == agent]


@contextlib.asynccontextmanager
async def live_room(local_stack, metadata: dict[str, Any], name: str | None = None) -> AsyncIterator[LiveRoom]:
    name = name or f"room-{uuid.uuid4().hex[:10]}"
    async with lk_api(local_stack.livekit_url) as lk:
        info = await lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=300))
        await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=name, metadata=json.dumps(metadata)))
        try:
            yield LiveRoom(lk, info, metadata)
        finally:
            with contextlib.suppress(Exception):
                await lk.room.delete_room(api.DeleteRoomRequest(room=name))


def agent(identity: str, dispatch_id: str = "", name: str = "translator", sid: str = "") -> dict[str, Any]:
    attributes = {"lk.agent_name": name} | ({"switchboard.dispatch_id": dispatch_id} if dispatch_id else {})
    who = participant(identity, "agent", attributes)
    return who | ({"sid": sid} if sid else {})


async def slot(store: Any, room: LiveRoom, key: str = "DISPATCH#translator") -> SlotRecord | None:
    return (await store.load_slots(room.sid)).get(key)


def results(outcome: Any) -> list[str]:
    return [s.result for s in outcome.slots]


# --- 1. a re-delivered departure -------------------------------------------------------


async def test_a_redelivered_agent_leave_never_acts_on_its_replacement(local_stack, env):
    """D1 leaves and is replaced by D2, which joins under the same identity (workers reuse
    identities); LiveKit then re-sends D1's leave. Before: D2 was deleted and replaced by D3."""
    async with live_room(local_stack, ROOM_AGENT) as room, pipeline() as pipe:
        await pipe.handle(room.started())
        d1 = (await slot(pipe.store, room)).dispatch_id
        first = agent("translator", d1)
        await pipe.handle(room.joined(first))
        leave = room.left(first)
        assert results(await pipe.handle(leave)) == ["redispatched"]
        d2 = (await slot(pipe.store, room)).dispatch_id
        assert d2 != d1
        await pipe.handle(room.joined(agent("translator", d2)))

        # The same event again (same id, same body), and the same leave without the
        # dispatch-id attribute (a worker that doesn't set it): D1 is gone, D2 stays.
        again = await pipe.handle(leave)
        bare = dict(first, attributes={"lk.agent_name": "translator"})
        stripped = await pipe.handle(room.left(bare))

        record = await slot(pipe.store, room)
        assert record.status == Status.JOINED and record.dispatch_id == d2, (again, stripped)
        assert record.attempts == 2
        assert [d.id for d in await room.dispatches()] == [d2]


async def test_a_leave_of_an_agent_still_connected_is_stale_and_removes_nothing(local_stack, env):
    """A participant_left whose participant, by sid, is in the room now: a real agent stays."""
    worker = local_stack.start_test_agent("stayer", "agent-stayer", tag_dispatch=True)
    try:
        async with live_room(local_stack, {"agents": [{"name": "stayer"}]}) as room, pipeline() as pipe:
            await pipe.handle(room.started())
            joined = await eventually(lambda: _joined(pipe.store, room, "DISPATCH#stayer"), timeout=60)
            [present] = [p for p in (await room.lk.room.list_participants(
                api.ListParticipantsRequest(room=room.name))).participants if p.identity == joined.agent_identity]
            stale = WebhookEvent(event="participant_left", id=f"EV_{uuid.uuid4().hex[:8]}", room=room.info)
            stale.participant.CopyFrom(present)
            stale.participant.disconnect_reason = 1  # CLIENT_INITIATED

            outcome = await pipe.handle(stale)

            record = await slot(pipe.store, room, "DISPATCH#stayer")
            assert record.status == Status.JOINED and record.dispatch_id == joined.dispatch_id, outcome
            assert [d.id for d in await room.dispatches("stayer")] == [joined.dispatch_id]
    finally:
        worker.stop()


async def _joined(store: Any, room: LiveRoom, key: str) -> SlotRecord | None:
    record = await slot(store, room, key)
    return record if record is not None and record.status == Status.JOINED else None


# --- 2. a CreateDispatch whose answer came too late -------------------------------------


async def test_an_owner_that_lost_its_lease_while_creating_deletes_its_own_dispatch(local_stack, env, faults):
    """A's CreateDispatch is slow (held 3 s by the proxy); its lease runs out, B takes over and
    dispatches; then A's dispatch lands. Before: A logged lease_lost and left it in LiveKit."""
    faults.livekit.add("latency", "upstream", latency=3000)
    async with live_room(local_stack, ROOM_AGENT) as room, \
            pipeline(livekit_url=faults.livekit_url, claim_lease_seconds=1, livekit_timeout_seconds=8) as slow, \
            pipeline(claim_lease_seconds=1) as fast:
        first = asyncio.create_task(slow.handle(room.started()))
        await eventually(lambda: slot(fast.store, room), interval=0.02)  # A has claimed; its create is held
        await asyncio.sleep(1.2)  # past A's lease
        assert results(await fast.handle(room.started())) in (["dispatched"], ["adopted"])
        outcome = await first
        faults.toxiproxy.reset()

        record = await slot(fast.store, room)
        assert results(outcome) == ["lease_lost"]
        assert [d.id for d in await room.dispatches()] == [record.dispatch_id]


async def test_the_sweeper_collects_a_dispatch_that_is_not_its_slots(local_stack, env):
    """Whatever made it (a create that landed after its caller gave up, an old owner), a dispatch
    carrying a slot that now holds another one is deleted by the next sweep, and noted on the slot."""
    async with live_room(local_stack, ROOM_AGENT) as room, pipeline(confirm_deadline_seconds=60) as pipe:
        await pipe.handle(room.started())
        record = await slot(pipe.store, room)
        planned = PlannedDispatch(room_sid=room.sid, room_name=room.name, agent_name="translator",
                                  rule=Rule.AGENTS, trigger="room_started")
        stray = await pipe.livekit.create(planned)  # what a create that timed out after taking effect leaves
        assert len(await room.dispatches()) == 2

        await Sweeper(pipe).sweep()

        assert [d.id for d in await room.dispatches()] == [record.dispatch_id]
        assert stray in json.dumps(dict((await slot(pipe.store, room)).stored))


# --- 3. a room name used again ----------------------------------------------------------


@pytest.mark.parametrize("room_finished", ["delivered", "dropped"])
async def test_a_failed_slot_of_an_ended_session_is_never_dispatched_into_the_next(local_stack, env, room_finished):
    name = f"room-{uuid.uuid4().hex[:10]}"
    async with pipeline(livekit_url="http://127.0.0.1:9") as unreachable, pipeline() as pipe:
        async with live_room(local_stack, ROOM_AGENT, name) as old:
            outcome = await unreachable.handle(old.started())
            assert outcome.retry and (await slot(pipe.store, old)).status == Status.FAILED
            if room_finished == "delivered":
                await pipe.handle(old.finished())
                assert (await slot(pipe.store, old)).status == Status.ENDED
        async with live_room(local_stack, {"agents": [{"name": "driver"}]}, name) as new:
            assert new.sid != old.sid
            await asyncio.sleep(0.5)  # past the failed slot's back-off
            await Sweeper(pipe).sweep()
            assert await new.dispatches("translator") == []
            assert (await slot(pipe.store, old)).status == Status.ENDED


# --- 4. a caller who comes back ----------------------------------------------------------


async def test_a_caller_who_comes_back_gets_their_agent_again(local_stack, env):
    async with live_room(local_stack, PER_CALLER) as room, pipeline() as pipe:
        key = "DISPATCH#translator#P#alice"
        await pipe.handle(room.joined(participant("alice")))
        d1 = (await slot(pipe.store, room, key)).dispatch_id
        helper = agent("translator-alice", d1)
        await pipe.handle(room.joined(helper))
        # Alice hangs up (nobody is in the real room); her translator leaves after her: ENDED.
        await pipe.handle(room.left(helper, "CLIENT_INITIATED"))
        assert (await slot(pipe.store, room, key)).status == Status.ENDED

        again = room.joined(participant("alice"))  # a new call: a new participant sid
        outcome = await pipe.handle(again)
        record = await slot(pipe.store, room, key)
        assert results(outcome) == ["dispatched"] and record.status == Status.DISPATCHED, outcome
        assert record.dispatch_id != d1
        # The same join delivered again is answered from its record: the first answer, nothing done.
        replayed = await pipe.handle(again)
        assert replayed.replay is not None and replayed.answer()["outcome"] == outcome.answer()["outcome"] | {
            "replayed": True}
        assert (await slot(pipe.store, room, key)).dispatch_id == record.dispatch_id


async def test_the_room_cap_counts_agents_in_the_room_not_every_slot_ever(local_stack, env):
    async with live_room(local_stack, PER_CALLER) as room, pipeline(max_agents_per_room=2) as pipe:
        await pipe.handle(room.joined(participant("alice")))
        d1 = (await slot(pipe.store, room, "DISPATCH#translator#P#alice")).dispatch_id
        helper = agent("translator-alice", d1)
        await pipe.handle(room.joined(helper))
        await pipe.handle(room.left(helper, "CLIENT_INITIATED"))  # alice is gone: her slot ends

        assert results(await pipe.handle(room.joined(participant("bob")))) == ["dispatched"]
        assert results(await pipe.handle(room.joined(participant("carol")))) == ["dispatched"]
        assert results(await pipe.handle(room.joined(participant("dave")))) == ["rejected"]


# --- 5. a join confirmed onto the wrong dispatch -----------------------------------------


async def test_an_agent_without_evidence_never_confirms_a_slot_by_name_alone(local_stack, env):
    """A join that LiveKit cannot tie to the slot's dispatch (no attribute, no job) confirms nothing."""
    async with live_room(local_stack, ROOM_AGENT) as room, pipeline() as pipe:
        await pipe.handle(room.started())
        outcome = await pipe.handle(room.joined(agent("stranger")))
        assert (await slot(pipe.store, room)).status == Status.DISPATCHED, outcome


async def test_a_late_join_of_a_replaced_dispatch_is_not_confirmed_onto_its_successor(local_stack, env):
    async with live_room(local_stack, ROOM_AGENT) as room, pipeline() as pipe:
        await pipe.handle(room.started())
        d1 = (await slot(pipe.store, room)).dispatch_id
        record = await slot(pipe.store, room)
        await pipe.slot_dispatch.run(_planned(room), record, "EV_sweep", Metrics(), redispatch="did not join")
        d2 = (await slot(pipe.store, room)).dispatch_id
        # D1's agent was read as DISPATCHED before the re-dispatch and writes its join now.
        late = agent("translator", d1)
        assert await pipe.store.mark_joined(room.sid, "DISPATCH#translator", late["identity"], d1) is False
        assert (await slot(pipe.store, room)).status == Status.DISPATCHED
        assert (await slot(pipe.store, room)).dispatch_id == d2


def _planned(room: LiveRoom) -> PlannedDispatch:
    return PlannedDispatch(room_sid=room.sid, room_name=room.name, agent_name="translator", rule=Rule.AGENTS,
                           trigger="room_started")


# --- the sweeper's reads --------------------------------------------------------------


async def test_a_sweeper_whose_key_livekit_refuses_ends_nothing_and_says_so(local_stack, env):
    async with live_room(local_stack, ROOM_AGENT) as room, pipeline() as pipe:
        await pipe.handle(room.started())
        await asyncio.sleep(0.5)  # past the confirm deadline
        async with pipeline(livekit_api_secret="a-rotated-secret-livekit-does-not-know-yet") as stale_key:
            report = await Sweeper(stale_key).sweep()
        assert (await slot(pipe.store, room)).status == Status.DISPATCHED
        assert any("401" in error or "unauthenticated" in error.lower() for error in report.errors), report.errors


# --- DynamoDB answers that come too late ------------------------------------------------


@contextlib.asynccontextmanager
async def store_through(faults, monkeypatch) -> AsyncIterator[DynamoStore]:
    """A store whose DynamoDB answers pass through the proxy: 1 s read timeout, two retries."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", faults.dynamodb_url)
    async with DynamoStore.open(settings(dynamodb_read_timeout_seconds=1, dynamodb_max_attempts=3)) as store:
        yield store


def slow_answer_once(faults) -> None:
    """Answers are held 3 s, past the read timeout, until just after the first try has timed
    out: the write applied, botocore gave up on its answer and retries; a retry gets through."""
    faults.dynamodb.add("latency", "downstream", latency=3000)
    threading.Timer(1.2, faults.toxiproxy.reset).start()


async def test_a_write_that_botocore_retried_after_it_applied_is_not_a_lost_lease(local_stack, env, faults,
                                                                                    monkeypatch):
    async with live_room(local_stack, ROOM_AGENT) as room, pipeline() as pipe, \
            store_through(faults, monkeypatch) as store:
        claim = await pipe.store.claim(_planned(room), "EV_1", None)
        slow_answer_once(faults)
        await store.mark_dispatched(claim, "AD_once")  # the first try applied; its retry finds it done
        record = await slot(pipe.store, room)
        assert record.status == Status.DISPATCHED and record.dispatch_id == "AD_once"


async def test_a_takeover_that_botocore_retried_after_it_applied_is_ours(local_stack, env, faults, monkeypatch):
    async with live_room(local_stack, ROOM_AGENT) as room, pipeline(claim_lease_seconds=0.2) as pipe, \
            store_through(faults, monkeypatch) as store:
        await pipe.store.claim(_planned(room), "EV_1", None)
        await asyncio.sleep(0.3)  # the first owner's lease is over
        slow_answer_once(faults)
        claim = await store.claim(_planned(room), "EV_2", await slot(pipe.store, room))
        record = await slot(pipe.store, room)
        assert record.owner == claim.owner and record.attempts == 2


# --- one webhook, one budget; siblings finish before the answer ----------------------------


async def test_a_webhook_whose_calls_outlast_its_budget_is_answered_503(local_stack, env, faults):
    """Each LiveKit call within its own 5 s bound, but together past the webhook's 1 s budget."""
    from tests.conftest import BUDGET_HANDLER_PORT
    from tests.webhooks import signed_request

    port = BUDGET_HANDLER_PORT
    service = local_stack.start_handler(port, "handler-budget", LIVEKIT_URL=faults.livekit_url,
                                        SWITCHBOARD_WEBHOOK_BUDGET_SECONDS="1")
    faults.livekit.add("latency", "downstream", latency=2000)
    try:
        async with live_room(local_stack, ROOM_AGENT) as room:
            import httpx

            body, headers = signed_request(event("room_started", room.name, room.sid, room.metadata))
            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers)
            assert response.status_code == 503 and "budget" in response.json()["error"], response.text
            assert response.headers["Retry-After"].isdigit()
    finally:
        faults.toxiproxy.reset()
        service.stop()


class _OneSlotUnavailable(DynamoStore):
    """DynamoDB refusing one slot's claim at once while its sibling's claim is slow: a schedule
    a real DynamoDB produces only by chance, so the refusal is made here."""

    async def claim(self, planned, event_id, existing, *, redispatch=None):
        if planned.agent_name == "dispatcher":
            from handler.claims import StoreUnavailable

            raise StoreUnavailable("DynamoDB ProvisionedThroughputExceededException")
        await asyncio.sleep(0.5)
        return await super().claim(planned, event_id, existing, redispatch=redispatch)


async def test_a_slot_that_fails_never_cuts_its_siblings_short(local_stack, env):
    from handler.claims import StoreUnavailable
    from handler.dynamo import dynamodb_client

    both = {"agents": [{"name": "dispatcher"}, {"name": "translator"}]}
    async with live_room(local_stack, both) as room, dynamodb_client(settings()) as client:
        store = _OneSlotUnavailable(client, settings())
        async with open_pipeline(settings(), store=store) as pipe:
            with pytest.raises(StoreUnavailable):
                await pipe.handle(room.started())
            # By the time the webhook is answered 503, the sibling's dispatch is on record.
            assert (await slot(store, room)).status == Status.DISPATCHED


async def test_a_delete_livekit_refuses_is_an_error_a_delete_of_what_is_gone_is_not(local_stack, env):
    """A refused DeleteDispatch must stop a re-dispatch (or there would be two); a dispatch already gone is fine."""
    from handler.dispatcher import LiveKitRejected

    async with live_room(local_stack, ROOM_AGENT) as room, pipeline() as pipe:
        dispatch_id = await pipe.livekit.create(_planned(room))
        await pipe.livekit.delete(dispatch_id, room.name)
        await pipe.livekit.delete(dispatch_id, room.name)  # already gone: not an error
        kept = await pipe.livekit.create(_planned(room))
        async with pipeline(livekit_api_secret="a-rotated-secret-livekit-does-not-know-yet") as stale_key:
            with pytest.raises(LiveKitRejected) as refused:
                await stale_key.livekit.delete(kept, room.name)
        assert refused.value.status == 401
        assert [d.id for d in await room.dispatches()] == [kept]

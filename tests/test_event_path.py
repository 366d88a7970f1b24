"""The webhook at its floor: events that cannot matter do no I/O; a completed delivery is replayed.

The real Pipeline and DynamoStore on DynamoDB Local and the real livekit-server, in this
process, each behind a thin wrapper that lists the calls made through it (the calls
themselves are real). And the same through the running handler over HTTP.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import Parse
from livekit.protocol.webhook import WebhookEvent

from handler.dynamo import DynamoStore
from handler.events import EVENT_TYPES, MATTERING_EVENTS, Relevance
from handler.pipeline import Pipeline
from handler.records import EventRecord
from handler.settings import Settings
from handler.table import event_sk, room_pk
from tests.livekit_helpers import lk_api, named_dispatches
from tests.webhooks import event, signed_request

pytestmark = pytest.mark.anyio
DRIVER = {"agents": [{"name": "driver"}]}


class Calls:
    """Passes every call through to `inner` and lists the coroutine methods called."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.made = inner, []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.made.append(name)
            return await target(*args, **kwargs)
        return call


@pytest.fixture
async def pipe(local_stack, aws, monkeypatch):
    from handler.contract import Routing
    from handler.dispatcher import LiveKitDispatcher

    for key, value in local_stack.env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(allowed_agents=frozenset({"driver"}))
    livekit = LiveKitDispatcher(settings)
    async with DynamoStore.open(settings) as store:
        yield Pipeline(settings, Calls(store), Calls(livekit), Routing.load(None))
    await livekit.aclose()


def webhook(body: dict[str, Any]) -> WebhookEvent:
    return Parse(json.dumps(body), WebhookEvent(), ignore_unknown_fields=True)


async def event_item(store: Any, room_sid: str, event_id: str) -> dict[str, Any] | None:
    page = await store._db.get_item(TableName=store._table, ConsistentRead=True,
                                    Key={"pk": {"S": room_pk(room_sid)}, "sk": {"S": event_sk(event_id)}})
    return page.get("Item")


def test_every_event_type_has_its_reason_and_the_filter_lets_through_what_matters():
    assert all(reason for _, reason in EVENT_TYPES.values())
    assert set(MATTERING_EVENTS) == {"room_started", "room_finished", "participant_joined", "participant_left",
                                     "participant_connection_aborted"}
    import yaml

    from infra.stack import INFRA
    config = yaml.safe_load((INFRA / "livekit.yaml").read_text())
    assert config["webhook"]["filter_params"]["include_events"] == list(MATTERING_EVENTS)


async def test_events_that_cannot_matter_touch_neither_dynamodb_nor_livekit(pipe, room):
    inert = [name for name, (relevance, _) in EVENT_TYPES.items() if relevance is Relevance.CANNOT_MATTER]
    for kind in inert:
        outcome = await pipe.handle(webhook(event(kind, room.name, room.sid, DRIVER, event_id=f"EV_{kind}")))
        assert outcome.answer()["decision"]["action"] == "ignore" and not outcome.retry
        assert "cannot change a decision" in outcome.answer()["decision"]["reason"]
    assert pipe.store.made == [] and pipe.livekit.made == []
    assert await event_item(pipe.store.inner, room.sid, "EV_track_published") is None


async def test_a_completed_delivery_is_answered_from_one_write_with_the_first_answer(pipe, room):
    started = webhook(event("room_started", room.name, room.sid, DRIVER))
    first = await pipe.handle(started)
    assert [s.result for s in first.slots] == ["dispatched"]
    pipe.store.made.clear(), pipe.livekit.made.clear()

    # LiveKit re-sends only after a failed POST, by its client's backoff (go-retryablehttp: 1 s
    # at least, then 2, 4, ...): the re-delivery is seconds older than the event.
    pipe.clock = lambda: time.time() + 5
    again = await pipe.handle(started)
    assert pipe.store.made == ["replay_event"] and pipe.livekit.made == []
    assert again.answer()["outcome"] == first.answer()["outcome"] | {"replayed": True}
    assert again.answer()["decision"] == first.answer()["decision"]
    item = await event_item(pipe.store.inner, room.sid, started.id)
    assert item["deliveries"]["N"] == "2"


async def test_a_fresh_room_started_checks_for_a_replay_beside_its_claims_and_a_re_delivery_is_still_replayed(
        pipe, room, local_stack):
    """A room_started under FRESH_EVENT_SECONDS old is taken for a first delivery: its replay
    check runs beside its claims, off the way to CreateDispatch. One that was answered 200
    after all (its answer lost, re-sent at once) is replayed all the same, and its claims find
    the slot as it was: no second dispatch."""
    class Spans(Calls):
        """Lists each call's start and its end: which calls were in flight together."""

        def __getattr__(self, name: str) -> Any:
            call = super().__getattr__(name)
            if not callable(getattr(self.inner, name)):
                return call

            async def spanned(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await call(*args, **kwargs)
                finally:
                    self.made.append(f"{name} done")
            return spanned

    pipe.store = pipe.slot_dispatch.store = Spans(pipe.store.inner)
    started = webhook(event("room_started", room.name, room.sid, DRIVER))
    first = await pipe.handle(started)
    assert [s.result for s in first.slots] == ["dispatched"] and first.replay is None
    # The claim went out before the replay check came back (in the code before: after it).
    assert pipe.store.made.index("claim") < pipe.store.made.index("replay_event done")
    pipe.store.made.clear(), pipe.livekit.made.clear()

    again = await pipe.handle(started)
    assert again.replay is not None and again.answer()["outcome"] == first.answer()["outcome"] | {"replayed": True}
    assert sorted(m for m in pipe.store.made if not m.endswith(" done")) == ["claim", "replay_event"]
    assert pipe.livekit.made == []
    async with lk_api(local_stack.livekit_url) as lk:
        assert [d.agent_name for d in await named_dispatches(lk, room.name)] == ["driver"]
    assert (await event_item(pipe.store.inner, room.sid, started.id))["deliveries"]["N"] == "2"


async def test_a_delivery_first_answered_503_is_handled_again_not_replayed(pipe, room, local_stack):
    """CreateDispatch to an unreachable LiveKit: FAILED retryable, 503. The re-delivery dispatches."""
    from handler.dispatcher import LiveKitDispatcher

    started = webhook(event("room_started", room.name, room.sid, DRIVER))
    unreachable = Settings(allowed_agents=frozenset({"driver"}), livekit_url="http://127.0.0.1:9")
    down = LiveKitDispatcher(unreachable)
    try:
        failed = await Pipeline(unreachable, pipe.store, down, pipe.routing).handle(started)
    finally:
        await down.aclose()
    assert failed.retry and [s.result for s in failed.slots] == ["failed"]

    again = await pipe.handle(started)
    assert again.replay is None and [s.result for s in again.slots] == ["dispatched"]
    async with lk_api(local_stack.livekit_url) as lk:
        assert [d.agent_name for d in await named_dispatches(lk, room.name)] == ["driver"]
    third = await pipe.handle(started)
    assert third.replay is not None and third.answer()["outcome"]["slots"] == again.answer()["outcome"]["slots"]


async def test_a_retry_on_record_never_overwrites_the_answer_that_stands(pipe, room):
    """Two deliveries handled at once: the 200 is recorded first, the other's 503 after it."""
    store = pipe.store.inner
    record = EventRecord(pk=room_pk(room.sid), sk=event_sk("EV_both"), event_id="EV_both",
                         event_type="room_started", room_name=room.name, decision={"action": "dispatch"})
    assert await store.replay_event(record.pk, record.sk) is None
    answered = replace(record, outcome={"retry": False, "slots": [{"slot": "DISPATCH#driver", "result": "dispatched"}]})
    await store.record_event(answered, received_at=time.time(), answered=True)
    await store.record_event(replace(record, outcome={"retry": True}), received_at=time.time(), answered=False)
    replay = await store.replay_event(record.pk, record.sk)
    assert replay.outcome["slots"][0]["result"] == "dispatched" and replay.deliveries == 2


async def test_over_http_an_ignored_event_leaves_no_record_and_a_redelivery_replays(local_stack, aws, room):
    track = event("track_published", room.name, room.sid)
    started = event("room_started", room.name, room.sid, DRIVER)
    async with httpx.AsyncClient(timeout=30) as client:
        ignored = await client.post(local_stack.webhook_url, content=(req := signed_request(track))[0], headers=req[1])
        first = await client.post(local_stack.webhook_url, content=(req := signed_request(started))[0], headers=req[1])
        again = await client.post(local_stack.webhook_url, content=req[0], headers=req[1])
    assert ignored.status_code == 200 and "cannot change a decision" in ignored.json()["decision"]["reason"]
    assert first.status_code == again.status_code == 200
    assert again.json()["outcome"] == first.json()["outcome"] | {"replayed": True}
    async with DynamoStore.open(Settings()) as store:
        assert await event_item(store, room.sid, track["id"]) is None
        assert await event_item(store, room.sid, started["id"]) is not None


async def test_a_sweeper_look_that_changes_nothing_is_not_recorded(pipe, local_stack):
    """The sweeper passes every live room every minute: a look that found every slot as wanted writes nothing."""
    from livekit import api

    from handler.sweeper import Sweeper

    async with lk_api(local_stack.livekit_url) as lk:
        room = await lk.room.create_room(api.CreateRoomRequest(name=f"room-sweep-{event('x', '', '')['id']}",
                                                               metadata=json.dumps(DRIVER), empty_timeout=60))
        try:
            await pipe.handle(webhook(event("room_started", room.name, room.sid, DRIVER)))
            await Sweeper(pipe).sweep()
            assert await event_item(pipe.store.inner, room.sid, f"SWEEP_{room.sid}") is None
        finally:
            await lk.room.delete_room(api.DeleteRoomRequest(room=room.name))

"""The claim state machine against the real DynamoDB Local."""

import asyncio
import time
import uuid

import pytest

from handler.claims import (
    ClaimInProgress,
    LeaseLost,
    RoomCapReached,
    SlotAlreadyDispatched,
    SlotClosed,
    Status,
)
from handler.dynamo import DynamoStore
from handler.policy import PlannedDispatch, Rule
from handler.records import EventRecord
from handler.settings import Settings
from handler.table import event_sk, room_pk

pytestmark = pytest.mark.anyio

SETTINGS = Settings(table_name="switchboard-dispatch", aws_region="us-east-1", claim_lease_seconds=10,
                    max_dispatch_attempts=3, max_agents_per_room=3)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def store(aws, clock):
    async with DynamoStore.open(SETTINGS, clock=clock) as s:
        yield s


def planned(room_sid, agent="driver", identity=""):
    return PlannedDispatch(room_sid=room_sid, room_name=f"name-{room_sid}", agent_name=agent,
                           rule=Rule.AGENTS, trigger="room_started", participant_identity=identity)


@pytest.fixture
def sid():
    return f"RM_{uuid.uuid4().hex[:12]}"


async def test_a_fresh_slot_is_claimed_with_a_lease(store, sid, clock):
    claim = await store.claim(planned(sid), "EV_1", None)
    assert (claim.attempt, claim.takeover) == (1, False)
    record = (await store.load_slots(sid))["DISPATCH#driver"]
    assert record.status == Status.CLAIMED
    assert record.owner == claim.owner
    assert record.lease_expires_at == pytest.approx(clock.now + 10)
    assert record.event_id == "EV_1" and record.claimed_at and record.room_name == f"name-{sid}"


async def test_a_live_claim_turns_others_away_whether_or_not_they_saw_it(store, sid):
    await store.claim(planned(sid), "EV_1", None)
    with pytest.raises(ClaimInProgress):
        await store.claim(planned(sid), "EV_1", None)  # a stale read: the conditional put still refuses
    with pytest.raises(ClaimInProgress):
        await store.claim(planned(sid), "EV_1", (await store.load_slots(sid))["DISPATCH#driver"])


async def test_a_dispatched_slot_is_a_duplicate(store, sid):
    claim = await store.claim(planned(sid), "EV_1", None)
    await store.mark_dispatched(claim, "AD_1")
    record = (await store.load_slots(sid))["DISPATCH#driver"]
    assert (record.status, record.dispatch_id) == (Status.DISPATCHED, "AD_1")
    assert "lease_expires_at" not in record.stored and record.dispatched_at >= record.claimed_at
    with pytest.raises(SlotAlreadyDispatched):
        await store.claim(planned(sid), "EV_2", None)


async def test_an_expired_lease_is_taken_over_and_the_old_owner_loses(store, sid, clock):
    first = await store.claim(planned(sid), "EV_1", None)
    clock.now += 11
    second = await store.claim(planned(sid), "EV_1", None)
    assert (second.attempt, second.takeover) == (2, True)
    with pytest.raises(LeaseLost):
        await store.mark_dispatched(first, "AD_late")
    await store.mark_dispatched(second, "AD_2")
    assert (await store.load_slots(sid))["DISPATCH#driver"].dispatch_id == "AD_2"


async def test_retryable_failures_are_retried_up_to_the_attempt_limit(store, sid):
    claim = await store.claim(planned(sid), "EV_1", None)
    for attempt in (2, 3):
        await store.mark_failed(claim, "LiveKit unreachable", retryable=True)
        claim = await store.claim(planned(sid), "EV_1", None)
        assert claim.attempt == attempt and claim.takeover
    await store.mark_failed(claim, "LiveKit unreachable", retryable=True)
    with pytest.raises(SlotClosed, match="failed after 3 attempt"):
        await store.claim(planned(sid), "EV_1", None)
    record = (await store.load_slots(sid))["DISPATCH#driver"]
    assert (record.status, record.error) == (Status.FAILED, "LiveKit unreachable")


async def test_a_refusal_from_livekit_is_final(store, sid):
    claim = await store.claim(planned(sid), "EV_1", None)
    await store.mark_failed(claim, "LiveKit invalid_argument", retryable=False)
    with pytest.raises(SlotClosed):
        await store.claim(planned(sid), "EV_2", None)


async def test_the_room_cap_counts_slots_across_events_once_each(store, sid, clock):
    claims = [await store.claim(planned(sid, agent), "EV_1", None) for agent in ("a", "b", "c")]
    with pytest.raises(RoomCapReached):
        await store.claim(planned(sid, "d"), "EV_2", None)
    with pytest.raises(RoomCapReached):
        await store.claim(planned(sid, "translator", "alice"), "EV_3", None)
    # Taking over an expired slot is not a new slot: the cap does not block it.
    clock.now += 11
    again = await store.claim(planned(sid, "a"), "EV_1", None)
    assert again.takeover and claims[0].owner != again.owner


async def test_concurrent_claims_from_separate_clients_have_exactly_one_winner(aws, sid):
    stores = []
    async with asyncio.timeout(60):
        opened = [DynamoStore.open(SETTINGS) for _ in range(10)]
        stores = [await cm.__aenter__() for cm in opened]
        try:
            results = await asyncio.gather(*(s.claim(planned(sid), "EV_1", None) for s in stores for _ in range(2)),
                                           return_exceptions=True)
        finally:
            for cm in opened:
                await cm.__aexit__(None, None, None)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, ClaimInProgress) for r in results if isinstance(r, Exception)), results


async def test_rejections_are_recorded_once(store, sid):
    assert await store.record_rejection(planned(sid, "rogue"), "EV_1", "not allowed")
    assert not await store.record_rejection(planned(sid, "rogue"), "EV_1", "not allowed")
    record = (await store.load_slots(sid))["DISPATCH#rogue"]
    assert (record.status, record.reason) == (Status.REJECTED, "not allowed")
    with pytest.raises(SlotClosed):
        await store.claim(planned(sid, "rogue"), "EV_2", None)


async def test_join_then_end(store, sid):
    claim = await store.claim(planned(sid), "EV_1", None)
    await store.mark_dispatched(claim, "AD_1")
    assert not await store.mark_joined(sid, "DISPATCH#driver", "agent-AJ_1", "AD_other")
    assert await store.mark_joined(sid, "DISPATCH#driver", "agent-AJ_1", "AD_1", "PA_1")
    assert not await store.mark_joined(sid, "DISPATCH#driver", "agent-AJ_1", "AD_1", "PA_1")
    await store.record_rejection(planned(sid, "rogue"), "EV_1", "not allowed")
    assert await store.end_room(sid) == 1
    slots = await store.load_slots(sid)
    assert slots["DISPATCH#driver"].status == Status.ENDED and slots["DISPATCH#driver"].joined_at
    assert slots["DISPATCH#rogue"].status == Status.REJECTED


async def test_event_records_count_deliveries_and_keep_the_first_time(store, sid, clock):
    record = EventRecord(pk=room_pk(sid), sk=event_sk("EV_x"), event_id="EV_x", event_type="room_started",
                         room_name="", decision={"action": "ignore"})
    await store.record_event(record, received_at=clock.now, answered=False)
    first = clock.now
    clock.now += 5
    await store.record_event(record, received_at=clock.now, answered=False)
    page = await store._db.get_item(TableName=SETTINGS.table_name,
                                    Key={"pk": {"S": room_pk(sid)}, "sk": {"S": event_sk("EV_x")}})
    item = page["Item"]
    assert item["deliveries"]["N"] == "2"
    assert item["created_at"]["S"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(first)))
    assert "room_name" not in item  # empty index keys are left out, not stored as ""


async def test_the_log_is_queryable_by_room_agent_status_and_time(store, sid, clock):
    p = planned(sid, "logger-agent")
    claim = await store.claim(p, "EV_1", None)
    await store.mark_dispatched(claim, "AD_9")
    await store.record_rejection(planned(sid, "rogue-agent"), "EV_1", "not allowed")
    since = clock.now - 60
    by_room = await store.query_log(room=p.room_name, since=since)
    assert {r.agent_name for r in by_room} == {"logger-agent", "rogue-agent"}
    by_agent = await store.query_log(agent="logger-agent", since=since)
    assert sid in {r.room_sid for r in by_agent}
    rejected = await store.query_log(room=p.room_name, status="REJECTED", since=since)
    assert [r.agent_name for r in rejected] == ["rogue-agent"]
    window = await store.query_log(since=since)
    assert {"logger-agent", "rogue-agent"} <= {r.agent_name for r in window if r.room_sid == sid}
    assert await store.query_log(room=p.room_name, since=clock.now + 60) == []


async def test_a_refused_connection_and_a_read_timeout_are_store_unavailable(aws, monkeypatch, sid):
    """What aiobotocore raises on the way (EndpointConnectionError, ReadTimeoutError: botocore's
    BotoCoreError, not a ClientError) must still be StoreUnavailable, so the webhook answers 503.
    A real client, one attempt each: a port nobody listens on, and one that accepts and never answers."""
    from handler.claims import StoreUnavailable

    held = []  # the silent server's connections, kept open (a dropped writer may close its socket)
    silent = await asyncio.start_server(lambda reader, writer: held.append(writer), "127.0.0.1", 0)
    closed = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    quick = SETTINGS.model_copy(update={"dynamodb_connect_timeout_seconds": 0.5, "dynamodb_read_timeout_seconds": 0.3,
                                        "dynamodb_max_attempts": 1})
    try:
        for port, error in ((closed_port, "EndpointConnectionError"),
                            (silent.sockets[0].getsockname()[1], "ReadTimeoutError")):
            monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{port}")
            async with DynamoStore.open(quick) as unreachable:
                with pytest.raises(StoreUnavailable, match=f"^DynamoDB {error}$"):
                    await unreachable.load_slots(sid)
                with pytest.raises(StoreUnavailable, match=f"^DynamoDB {error}$"):
                    await unreachable.record_rejection(planned(sid), "EV_1", "not allowed")
    finally:
        silent.close()

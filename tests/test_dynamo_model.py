"""The explorer's in-memory DynamoDB held to DynamoDB Local: the same store operations, the same answers.

Random sequences of every DynamoStore call (claims, takeovers, re-openings, the cap,
dispatches, failures, joins, settles, room ends, rejections, orphan notes, events,
the sweeper's work list, the log's queries) run on a DynamoStore over DynamoDB Local
and on one over the model, with the same clock and the same owner ids. After each
call the answer (or the error) and every item in the table must be the same.
"""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

import pytest

import handler.dynamo as dynamo
from handler.claims import Claim, ClaimError, Status
from handler.codec import from_item
from handler.dynamo import DynamoStore, dynamodb_client
from handler.policy import PlannedDispatch, Rule
from handler.records import EventRecord, SlotRecord
from handler.settings import Settings
from handler.table import create_table_request
from tests.explorer.dynamo_model import DynamoModel

pytestmark = pytest.mark.anyio
SEQUENCES = 12
CALLS = 60


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class SameIds:
    """uuid4 for both stores: the n-th id of one is the n-th of the other."""

    def __init__(self) -> None:
        self.counter = itertools.count()

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=next(self.counter))


def plans(rng: random.Random, sids: list[str], clock: Clock) -> PlannedDispatch:
    sid = rng.choice(sids)
    if rng.random() < 0.5:
        return PlannedDispatch(room_sid=sid, room_name=f"room-{sid}", agent_name=rng.choice(("driver", "assistant")),
                               rule=Rule.AGENTS, trigger="room_started")
    who = rng.choice(("alice", "bob", "carol"))
    return PlannedDispatch(room_sid=sid, room_name=f"room-{sid}", agent_name="translator",
                           rule=Rule.ON_PARTICIPANT_JOINED, trigger="participant_joined",
                           participant_identity=who, triggered_by=who, participant_sid=f"PA_{rng.randrange(4)}",
                           participant_joined_ms=int((clock.now - rng.choice((-30, 30))) * 1000))


def shown(value: Any) -> Any:
    if isinstance(value, (SlotRecord, EventRecord)):
        # Every attribute as read, not only the typed fields: the answers are compared whole.
        return (type(value).__name__, shown(dict(value.stored)))
    if isinstance(value, Claim):
        return ("claim", value.owner, value.attempt, value.takeover, value.previous_dispatch_id, value.last_chance)
    if isinstance(value, dict):
        return {k: shown(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return sorted((shown(v) for v in value), key=repr)
    return value


async def call(store: DynamoStore, name: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return shown(await getattr(store, name)(*args, **kwargs))
    except ClaimError as exc:
        return (type(exc).__name__, str(exc), shown(exc.record))


async def everything(client: Any, table: str) -> list[dict[str, Any]]:
    if isinstance(client, DynamoModel):
        items = list(client.tables[table]["items"].values())
    else:
        items = (await client.scan(TableName=table, ConsistentRead=True))["Items"]
    return sorted((from_item(i) for i in items), key=lambda r: (r["pk"], r["sk"]))


async def run_both(seed: int, real: Any, monkeypatch) -> None:
    rng = random.Random(seed)
    clock = Clock()
    table = f"model-{seed}-{uuid.uuid4().hex[:6]}"
    model = DynamoModel()
    settings = Settings(table_name=table, max_agents_per_room=2, max_dispatch_attempts=3, claim_lease_seconds=5)
    for client in (real, model):
        await client.create_table(**create_table_request(table))
    stores = [DynamoStore(real, settings, clock=clock), DynamoStore(model, settings, clock=clock)]
    ids = [SameIds(), SameIds()]
    sids = ["RM_a", "RM_b"]
    claims: list[list[Any]] = [[], []]
    try:
        for step in range(CALLS):
            clock.now += rng.choice((0, 0.5, 2, 6))
            op = rng.choice(("claim", "claim", "dispatched", "failed", "joined", "settle", "end", "reject",
                             "missing", "orphan", "event", "replay", "pending", "log"))
            planned = plans(rng, sids, clock)
            pick = rng.random()
            answers = []
            for which, store in enumerate(stores):
                monkeypatch.setattr(dynamo, "uuid", ids[which])
                slots = await store.load_slots(planned.room_sid)
                record = slots.get(planned.slot)
                mine = claims[which]
                if op == "claim":
                    answer = await call(store, "claim", planned, f"EV_{step}", record if pick < 0.7 else None,
                                        redispatch="gone" if pick < 0.2 else None)
                    if isinstance(answer, tuple) and answer[0] == "claim":
                        mine.append(answer)
                elif op in ("dispatched", "failed") and mine:
                    _, owner, attempt, takeover, previous, last = mine[int(pick * len(mine))]
                    claim = Claim(planned, owner, attempt, takeover, previous, last)
                    answer = await call(store, "mark_dispatched", claim, f"AD_{step}") if op == "dispatched" else \
                        await call(store, "mark_failed", claim, "LiveKit down", retryable=pick < 0.5)
                elif op == "joined" and record:
                    answer = await call(store, "mark_joined", planned.room_sid, planned.slot, "agent-x",
                                        record.dispatch_id if pick < 0.7 else "AD_other", "PA_9")
                elif op == "settle" and record:
                    answer = await call(store, "settle", record, Status.ENDED if pick < 0.5 else Status.FAILED, "why")
                elif op == "end":
                    answer = await call(store, "end_room", planned.room_sid)
                elif op == "reject":
                    answer = await call(store, "record_rejection", planned, f"EV_{step}", "not allowed")
                elif op == "missing" and record:
                    answer = await call(store, "mark_missing", record, pick < 0.6)
                elif op == "orphan" and record:
                    answer = await call(store, "note_orphan", record, f"AD_{step}", "not the slot's")
                elif op == "event":
                    event = EventRecord(pk=f"ROOM#{planned.room_sid}", sk=f"EVENT#{step % 3}", event_id=f"EV_{step % 3}",
                                        room_name=planned.room_name, event_type="room_started")
                    answer = await call(store, "record_event", event, received_at=clock.now, answered=pick < 0.5)
                elif op == "replay":
                    answer = await call(store, "replay_event", f"ROOM#{planned.room_sid}", f"EVENT#{step % 3}")
                elif op == "pending":
                    answer = await call(store, "pending")
                elif op == "log":
                    answer = await call(store, "query_log", room=planned.room_name, since=clock.now - 3600)
                else:
                    answer = None
                answers.append(answer)
            assert answers[0] == answers[1], f"seed {seed} step {step} {op}: DynamoDB Local said {answers[0]!r}, " \
                                             f"the model {answers[1]!r}"
            assert await everything(real, table) == await everything(model, table), f"seed {seed} step {step} {op}"
    finally:
        await real.delete_table(TableName=table)


async def test_the_model_answers_every_store_call_as_dynamodb_local_does(aws, monkeypatch):
    async with dynamodb_client(Settings()) as real:
        for seed in range(1, SEQUENCES + 1):
            await run_both(seed, real, monkeypatch)

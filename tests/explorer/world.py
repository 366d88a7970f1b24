"""One explored schedule: the real Pipeline, Sweeper and DynamoStore (on DynamoDB Local) against
the LiveKit model, under a seeded scheduler, with invariants checked after every step.

    world = await World.open(seed, client)
    violations = await world.run()      # [] or what broke, with the trace to replay it

What varies with the seed: how many rooms and people, which agents have a worker,
how often calls fail before or after taking effect (LiveKit and DynamoDB), how often
LiveKit re-delivers, reorders or drops a webhook, when agents join (or connect and never
become active) or drop out, when
the sweeper runs, how far the clock moves, and which paused task goes next.
(Over ~300 lines: a schedule's steps and the invariants they are checked by belong together.)
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import EndpointConnectionError
from livekit.protocol.webhook import WebhookEvent

from handler.claims import Status, StoreUnavailable
from handler.contract import Routing
from handler.dynamo import DynamoStore
from handler.observability import Metrics
from handler.pipeline import Pipeline
from handler.records import SlotRecord
from handler.settings import Settings
from handler.sweeper import Sweeper
from handler.table import create_table_request

from .livekit_model import Faults, LiveKitModel
from .scheduler import Baton

METADATA = {"agents": [{"name": "driver"}], "on_participant_joined": [{"name": "translator", "per": "participant"}]}
WITH_UNSERVED = {"agents": [{"name": "driver"}, {"name": "assistant"}],
                 "on_participant_joined": [{"name": "translator", "per": "participant"}]}
PEOPLE = ("alice", "bob", "carol")


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class DynamoFaults:
    unavailable: float = 0.0  # the call fails before it reaches the table
    lost_answer: float = 0.0  # the write applied, its answer timed out, botocore sent it again


class PausedDynamo:
    """DynamoDB Local's client, pausing on the Baton before each call.

    A lost answer is what botocore does on a read timeout: the same request again, the
    first having applied (a transaction keeps its ClientRequestToken, as botocore's is).
    """

    def __init__(self, client: Any, baton: Baton, rng: random.Random, faults: DynamoFaults) -> None:
        self._client, self._baton, self._rng, self._faults = client, baton, rng, faults

    async def _call(self, name: str, **request: Any) -> Any:
        await self._baton.pause(f"dynamodb.{name}")
        if self._rng.random() < self._faults.unavailable:
            raise EndpointConnectionError(endpoint_url="http://dynamodb-local")
        method = getattr(self._client, name)
        if name in ("update_item", "put_item", "transact_write_items") and self._rng.random() < self._faults.lost_answer:
            if name == "transact_write_items":
                request.setdefault("ClientRequestToken", uuid.uuid4().hex)
            try:
                await method(**request)
            except Exception:  # noqa: BLE001 - its answer is lost either way
                pass
            await self._baton.pause(f"dynamodb.{name}.retried")
        return await method(**request)

    async def query(self, **r: Any) -> Any:
        return await self._call("query", **r)

    async def get_item(self, **r: Any) -> Any:
        return await self._call("get_item", **r)

    async def put_item(self, **r: Any) -> Any:
        return await self._call("put_item", **r)

    async def update_item(self, **r: Any) -> Any:
        return await self._call("update_item", **r)

    async def transact_write_items(self, **r: Any) -> Any:
        return await self._call("transact_write_items", **r)


@dataclass
class World:
    seed: int
    rng: random.Random
    baton: Baton
    clock: Clock
    settings: Settings
    livekit: LiveKitModel
    store: DynamoStore
    reader: DynamoStore  # the same table, read without pauses, for the invariants
    pipeline: Pipeline
    room_names: list[str]
    metadata: dict[str, Any]
    violations: list[str] = field(default_factory=list)
    handled: list[WebhookEvent] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    tries: dict[str, int] = field(default_factory=dict)
    # Agents whose media connection fails: in half the schedules, a third of their joins.
    connections: random.Random = field(default_factory=random.Random)
    failing_connections: float = 0.0
    # Whether a stuck session gives up while a RemoveParticipant meant for it is on its way:
    # drawn apart too, for the same reason.
    give_ups: random.Random = field(default_factory=random.Random)

    @classmethod
    async def open(cls, seed: int, client: Any) -> World:
        rng = random.Random(seed)
        baton = Baton(random.Random(rng.random()))
        clock = Clock()
        table = f"explore-{seed}-{uuid.uuid4().hex[:6]}"
        await client.create_table(**create_table_request(table))
        settings = Settings(table_name=table, allowed_agents=frozenset({"driver", "translator", "assistant"}),
                            claim_lease_seconds=4, confirm_deadline_seconds=3, missing_agent_grace_seconds=6,
                            stuck_agent_grace_seconds=6,
                            max_dispatch_attempts=3, livekit_api_key="k", livekit_api_secret="s")
        rough = rng.random() < 0.7  # most schedules have faults; some are clean, to explore ordering alone
        livekit = LiveKitModel(baton, rng, clock, workers={"driver", "translator"}, faults=Faults(
            unavailable=0.05 * rough, lost_answer=0.08 * rough, refused_rooms=0.1 * rough,
            worker_refuses=0.1 * rough * (rng.random() < 0.5)))
        store = DynamoStore(PausedDynamo(client, baton, rng, DynamoFaults(0.03 * rough, 0.06 * rough)),
                            settings, clock=clock)
        world = cls(seed, rng, baton, clock, settings, livekit, store, DynamoStore(client, settings, clock=clock),
                    Pipeline(settings, store, livekit, Routing(), clock=clock),  # type: ignore[arg-type]
                    [f"room-{seed}-{i}" for i in range(rng.choice((1, 1, 2)))],
                    WITH_UNSERVED if rng.random() < 0.2 else METADATA)
        livekit.on_delete_present = world._deleted_a_present_agent
        world.connections = random.Random(f"connections-{seed}")
        world.failing_connections = 1 / 3 if world.connections.random() < 1 / 2 else 0.0
        world.give_ups = random.Random(f"give-ups-{seed}")
        return world

    async def close(self, client: Any) -> None:
        await client.delete_table(TableName=self.settings.table_name)

    # --- a schedule ----------------------------------------------------------------

    async def run(self, steps: int = 160) -> list[str]:
        # No EMF lines per schedule; put back after, for the tests that run beside this one.
        flush, Metrics.flush = Metrics.flush, lambda self: None  # type: ignore[method-assign]
        try:
            return await self._run(steps)
        finally:
            Metrics.flush = flush  # type: ignore[method-assign]

    async def _run(self, steps: int) -> list[str]:
        for name in self.room_names:
            self.sessions.add(self.livekit.start_room(name, self.metadata).sid)
        for _ in range(steps):
            await self._one_step()
            await self._check_always()
            if self.violations:
                return self.violations
        await self._settle_down()
        await self._check_always()
        await self._check_end()
        return self.violations

    async def _one_step(self) -> None:
        rng, lk = self.rng, self.livekit
        if lk.removing and self.give_ups.random() < 0.5:
            await self._identity_taken_meanwhile(*lk.removing[0])
        if self.baton.busy and rng.random() < 0.6:
            await self.baton.step()
            return
        choice = rng.random()
        if choice < 0.30 and lk.webhooks:
            await self._deliver(lk.webhooks.pop(0 if rng.random() < 0.7 else rng.randrange(len(lk.webhooks))))
        elif choice < 0.34 and self.handled:
            lk.webhooks.append(rng.choice(self.handled))  # delivered, its answer lost: sent again
        elif choice < 0.36 and lk.webhooks:
            lk.webhooks.pop(rng.randrange(len(lk.webhooks)))  # older than 30 s in its queue: dropped
        elif choice < 0.48 and lk.jobs:
            # (Whether its media connection fails is drawn apart, so the main draws, and the
            # schedules of seeds kept before connections could fail, stay what they were.)
            lk.agent_joins(rng.choice(lk.jobs), active=self.connections.random() >= self.failing_connections)
        elif choice < 0.56:
            lk.person_joins(rng.choice(self.room_names), rng.choice(PEOPLE))
        elif choice < 0.60:
            lk.person_leaves(rng.choice(self.room_names))
        elif choice < 0.63:
            lk.agent_drops(rng.choice(self.room_names))
        elif choice < 0.64:
            name = rng.choice(self.room_names)
            lk.finish_room(name)
            if rng.random() < 0.6:  # the same name, a new session
                self.sessions.add(lk.start_room(name, self.metadata).sid)
        elif choice < 0.74:
            await self.baton.spawn(f"sweep-{len(self.baton.trace)}", Sweeper(self.pipeline, clock=self.clock).sweep())
        else:
            self.clock.now += rng.choice((0.1, 0.5, 1, 2, 5))

    async def _identity_taken_meanwhile(self, name: str, identity: str) -> None:
        """The window RemoveParticipant (by identity) leaves open: the stuck session it is meant
        for gives up by itself, and a new agent takes the identity before the removal lands:
        one whose job is already waiting (most likely while the call is still paused), or,
        now and then, the slot's next, through a sweep run beside."""
        agent_name = self.livekit.stuck_agent_name(name, identity)
        if not agent_name:
            return
        waiting = [d for d in self.livekit.jobs if self.livekit.dispatches[d].room_name == name
                   and self.livekit.dispatches[d].agent_name == agent_name]
        if not waiting and self.give_ups.random() >= 0.25:
            return
        self.livekit.stuck_session_gives_up(name, identity)
        if waiting:
            self.livekit.agent_joins(waiting[0])
        else:
            await self.baton.spawn(f"sweep-{len(self.baton.trace)}", Sweeper(self.pipeline, clock=self.clock).sweep())

    async def _deliver(self, event: WebhookEvent) -> None:
        def again() -> None:
            # A 503: LiveKit sends it again, until it is 30 s old in the room's queue.
            self.tries[event.id] = self.tries.get(event.id, 0) + 1
            if self.tries[event.id] < 8:
                self.livekit.webhooks.append(event)

        async def handle() -> None:
            try:
                outcome = await self.pipeline.handle(event)
            except StoreUnavailable:
                return again()
            if outcome.retry:
                again()
            else:
                self.handled.append(event)

        await self.baton.spawn(f"webhook {event.event} {event.id}", handle())

    async def _settle_down(self) -> None:
        """No more faults or world events: deliver, join, sweep, wait, until nothing changes."""
        lk = self.livekit
        lk.faults = Faults()
        self.store._db._faults = DynamoFaults()  # type: ignore[attr-defined]
        unchanged, last = 0, None
        for _ in range(14):
            # Stable twice running, past every grace period and back-off: nothing more will happen.
            now = await self._snapshot()
            unchanged = unchanged + 1 if now == last else 0
            if unchanged >= 2:
                break
            last = now
            await self.baton.drain()
            for _ in range(40):
                if not (lk.webhooks or lk.jobs):
                    break
                while lk.webhooks:
                    await self._deliver(lk.webhooks.pop(0))
                    await self.baton.drain()
                while lk.jobs:
                    lk.agent_joins(lk.jobs[0])
                self.clock.now += 1
            self.clock.now += 8
            await self.baton.spawn(f"sweep-{len(self.baton.trace)}", Sweeper(self.pipeline, clock=self.clock).sweep())
            await self.baton.drain()
            await self._check_always()

    async def _snapshot(self) -> Any:
        slots = await self._slots()
        lk = self.livekit
        return (repr(sorted((sid, k, r.status, r.dispatch_id, r.attempts, r.missing_since)
                            for sid, rs in slots.items() for k, r in rs.items())),
                sorted(d.id for d in lk.dispatches.values() if not d.deleted),
                sorted(sid for live in lk.live.values() for sid in live.agents), len(lk.webhooks), len(lk.jobs))

    # --- invariants --------------------------------------------------------------------

    def _fail(self, what: str) -> None:
        self.violations.append(f"seed {self.seed}, step {len(self.baton.trace)}: {what}")

    async def _slots(self) -> dict[str, dict[str, SlotRecord]]:
        return {sid: await self.reader.load_slots(sid) for sid in sorted(self.sessions)}

    async def _check_always(self) -> None:
        for error in self.baton.errors:
            self._fail(f"escaped: {type(error).__name__}: {error}")
        self.baton.errors.clear()
        live_sids = {live.room.sid: live for live in self.livekit.live.values()}
        for sid, slots in (await self._slots()).items():
            for key, record in slots.items():
                if record.attempts > self.settings.max_dispatch_attempts:
                    self._fail(f"{key} in {sid}: {record.attempts} attempts, over the budget")
                if record.status == Status.ENDED and sid in live_sids and "room session" in record.reason:
                    self._fail(f"{key} in {sid} ENDED as 'room session over' while its session is live")
                live = live_sids.get(sid)
                agent = live.agents.get(record.agent_sid or "") if live else None
                if record.status == Status.JOINED and agent and agent.dispatch_id != record.dispatch_id:
                    self._fail(f"{key} in {sid} JOINED with dispatch {record.dispatch_id}, "
                               f"but its agent came from {agent.dispatch_id}")

    async def _deleted_a_present_agent(self, dispatch_id: str, agent_sid: str, room_sid: str) -> None:
        """A delete removed an agent that was in its room. Fine for a double or an orphan, or an agent
        whose join nobody had confirmed yet; a bug when the log knew it as the slot's joined agent."""
        for key, record in (await self.reader.load_slots(room_sid)).items():
            if record.agent_sid == agent_sid and record.dispatch_id == dispatch_id:
                task = asyncio.current_task()
                self._fail(f"{key} in {room_sid}: its joined agent {agent_sid} (dispatch {dispatch_id}) "
                           f"was deleted while in the room by {task.get_name() if task else '?'} "
                           f"(status now {record.status})")

    async def _check_end(self) -> None:
        slots_by_sid = await self._slots()
        for live in self.livekit.live.values():
            sid = live.room.sid
            if sid not in self.sessions:
                continue  # a room CreateDispatch made, not one the world started
            slots = slots_by_sid.get(sid, {})
            wanted = {f"DISPATCH#{a['name']}" for a in self.metadata["agents"]} | {
                f"DISPATCH#translator#P#{p.identity}" for p in live.people.values()}
            agents_by_dispatch: dict[str, list[str]] = {}
            for agent in live.agents.values():
                agents_by_dispatch.setdefault(agent.dispatch_id, []).append(agent.participant.identity)
            for key in sorted(wanted):
                record = slots.get(key)
                if record is None:
                    self._fail(f"{key} in {sid}: wanted, but no record")
                    continue
                status = record.status
                if status == Status.FAILED and record.error:
                    continue
                present = agents_by_dispatch.get(record.dispatch_id, [])
                if status != Status.JOINED or len(present) != 1:
                    self._fail(f"{key} in {sid}: wanted; ended {status} with {len(present)} agent(s) of its "
                               f"dispatch in the room ({record.reason or record.error or ''})")
            for key, ids in self.livekit.live_dispatches_of(live.room).items():
                if len(ids) > 1:
                    self._fail(f"{key} in {sid}: {len(ids)} live dispatches after the sweeper ran: {ids}")
            current = {r.dispatch_id for r in slots.values() if r.status == Status.JOINED}
            for dispatch_id, identities in agents_by_dispatch.items():
                if dispatch_id not in current or len(identities) > 1:
                    self._fail(f"agent(s) {identities} of dispatch {dispatch_id} in {sid} belong to no joined slot")

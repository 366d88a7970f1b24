"""verified event → decision → claim → dispatch → record.

The one place that strings the steps together: it decides (policy), routes the
decision to the orchestrator of its state machine (slot_dispatch for a room's
slots, presence for an agent's join or departure), and records the event. Each
step lives in its own module; this one decides what the webhook's answer is:
`Outcome.retry` means "LiveKit, send this again".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from livekit.protocol.webhook import WebhookEvent

from .answers import Outcome, SlotResult
from .claims import DispatchStore
from .contract import Routing
from .dispatcher import LiveKitDispatcher
from .events import Relevance, relevance
from .observability import Metrics
from .outcomes import SlotOutcome, Source
from .policy import Action, Decision, decide, participant_kind
from .presence import Presence
from .records import EventRecord
from .settings import DEFAULT_PROJECT, Project, Settings
from .slot_dispatch import SlotDispatch
from .table import event_sk, room_pk

log = logging.getLogger("switchboard")

# How old (by LiveKit's clock, which stamps created_at, against ours) a room_started may be
# and still be taken for a first delivery, whose replay check then runs beside its claims.
# LiveKit posts an event as it happens and re-sends one only after a failed POST; a
# re-delivery inside this window is still handled right (its claims find their slots; its
# answer is replayed), at the price of a failed transaction per slot.
FRESH_EVENT_SECONDS = 2.0

A = TypeVar("A")
B = TypeVar("B")

def _changed_nothing(outcome: Outcome) -> bool:
    """Nothing was claimed, dispatched, settled or asked again: an ignore, or every slot already as wanted."""
    return not outcome.retry and not outcome.note and all(
        s.result is SlotOutcome.DUPLICATE for s in outcome.slots) and (
        bool(outcome.slots) or outcome.decision.action is Action.IGNORE)


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both, side by side, each run to its end before either's error is raised (a claim left
    mid-CreateDispatch would be frozen there on Lambda)."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    for result in (a, b):
        if isinstance(result, BaseException):
            raise result
    return a, b  # type: ignore[return-value]  # (neither is an exception here)


def event_id_of(event: WebhookEvent) -> str:
    # LiveKit always sets an id; a hand-made event without one still gets a stable key.
    return event.id or "noid-" + hashlib.sha256(event.SerializeToString(deterministic=True)).hexdigest()[:24]


@contextlib.asynccontextmanager
async def open_pipeline(settings: Settings, *, routing: Routing | None = None, store: DispatchStore | None = None,
                        livekit: LiveKitDispatcher | None = None,
                        project: str | None = None) -> AsyncIterator[Pipeline]:
    """A Pipeline for one project (the default one, or the only one) with its DynamoDB client
    and LiveKit session open for the block's lifetime."""
    async with open_pipelines(settings, routing=routing, store=store, livekit=livekit,
                              only=[settings.project(project).name]) as pipelines:
        yield next(iter(pipelines.values()))


@contextlib.asynccontextmanager
async def open_pipelines(settings: Settings, *, routing: Routing | None = None, store: DispatchStore | None = None,
                         livekit: LiveKitDispatcher | None = None,
                         only: list[str] | None = None) -> AsyncIterator[dict[str, Pipeline]]:
    """A Pipeline per project, by name: one DynamoDB client for all, and each project's own
    LiveKit client (its URL, its dispatch key), created once and closed with the block.

    A `livekit` passed in is the default project's (tests inject one); a `routing` passed in
    is the deployment's, for every project without a routing file of its own.
    """
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            from .dynamo import DynamoStore

            store = await stack.enter_async_context(DynamoStore.open(settings))
        default = settings.project().name
        pipelines: dict[str, Pipeline] = {}
        for name, project in settings.projects.items():
            if only is not None and name not in only:
                continue
            client = livekit if livekit is not None and name == default else None
            if client is None:
                client = LiveKitDispatcher(settings, project)
                stack.push_async_callback(client.aclose)
            # The deployment's routing (loaded once, by create_app, so a broken file fails start-up),
            # unless the project has a file of its own.
            project_routing = Routing.load(project.routing_file) if project.routing_file else \
                routing if routing is not None else Routing.load(settings.routing_file)
            pipelines[name] = Pipeline(project_settings(settings, project), store_for(store, name), client,
                                       project_routing)
        yield pipelines


def project_settings(settings: Settings, project: Project) -> Settings:
    """The settings a project's rooms are decided by: its own allowlist, if it has one."""
    if project.allowed_agents is None:
        return settings
    return settings.model_copy(update={"allowed_agents": project.allowed_agents})


def store_for(store: DispatchStore, project: str) -> DispatchStore:
    """The store's view of one project (a store without projects is the default one's)."""
    for_project = getattr(store, "for_project", None)
    if for_project is None:
        return store
    return for_project(project) if getattr(store, "project", None) != project else store


class Pipeline:
    def __init__(self, settings: Settings, store: DispatchStore, livekit: LiveKitDispatcher,
                 routing: Routing, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.settings = settings
        self.store = store
        self.livekit = livekit
        self.routing = routing
        # The project whose webhooks this pipeline answers: its store's (a store without
        # projects is the default project's).
        self.project: str = getattr(store, "project", None) or DEFAULT_PROJECT
        self.slot_dispatch = SlotDispatch(settings, store, livekit)
        self.presence = Presence(settings, store, livekit, routing, self.slot_dispatch, clock=clock)

    async def handle(self, event: WebhookEvent, *, source: Source = Source.WEBHOOK) -> Outcome:
        """Act on one verified event and record it. Raises StoreUnavailable if the log is down.

        `source` is WEBHOOK, or SWEEP for an event the sweeper rebuilt from
        LiveKit's state because the real one may have been dropped.
        """
        metrics = Metrics()
        relevant, why = relevance(event.event)
        if relevant is Relevance.CANNOT_MATTER:
            # No I/O and no record: counted, and the metric's line says what it was (handler/events.py).
            metrics.add("InertEvents", 1)
            metrics.flush(event_type=event.event, room_name=event.room.name)
            return Outcome(Decision(Action.IGNORE, f"{event.event} events cannot change a decision: {why}"))
        received_at = time.time()
        event_id = event_id_of(event)
        decision = decide(event, self.routing, self.settings, trigger="reconcile" if source is Source.SWEEP else None)
        # Idempotency by event id: a re-delivery of an event already answered 200 is answered
        # from its record, in one conditional write (it also counts the delivery). Anything less
        # than a 200 on record (a 503, a crash, a lost lease's retry) is handled again: every
        # step below is safe to repeat.
        replay_check = source is Source.WEBHOOK and decision.action is not Action.IGNORE
        # A delivered room_started claims without reading first: it is on the path that brings a
        # new room its agents, and its slots almost never exist yet (see _dispatch). When it is
        # fresh, it is almost surely a first delivery, and its replay check runs beside its claims
        # instead of before them, one DynamoDB round trip off the way to CreateDispatch.
        first_event = source is Source.WEBHOOK and event.event == "room_started" and decision.action is Action.DISPATCH
        beside = replay_check and first_event and self.clock() - event.created_at < FRESH_EVENT_SECONDS
        if replay_check and not beside:
            replay = await self.store.replay_event(*self._event_key(event, event_id))
            if replay is not None:
                return self._replayed(event, decision, replay, metrics, source)
        try:
            if beside:
                replay, outcome = await _both(self.store.replay_event(*self._event_key(event, event_id)),
                                              self._dispatch(event, decision, event_id, metrics, read_first=False))
                if replay is not None:
                    # A re-delivery after all: its claims found their slots as they were (or took
                    # over what a sweep would have), and its answer is the first one.
                    return self._replayed(event, decision, replay, metrics, source)
            elif decision.action is Action.DISPATCH:
                outcome = await self._dispatch(event, decision, event_id, metrics, read_first=not first_event)
            elif decision.action is Action.CONFIRM_JOIN:
                outcome = await self.presence.confirm_join(event, decision)
            elif decision.action is Action.AGENT_LEFT:
                outcome = await self.presence.agent_left(event, decision, event_id, metrics)
            elif decision.action is Action.END_ROOM:
                ended = await self.store.end_room(event.room.sid) if event.room.sid else 0
                outcome = Outcome(decision, note=f"{ended} dispatch(es) ended")
            else:
                outcome = Outcome(decision)
            # `answered`: this record is a 200, so a re-delivery replays it (see replay_event).
            # A sweeper's look that changed nothing is not recorded: it passes every live room
            # every minute, and those records were most of a room's writes (BENCHMARKS.md, cost).
            if source is not Source.SWEEP or not _changed_nothing(outcome):
                await self.store.record_event(self._event_record(event, event_id, outcome, source),
                                              received_at=received_at, answered=not outcome.retry)
        finally:
            metrics.flush()
        log.info(f"{source} event handled", extra={
            "project": self.project, "event_type": event.event, "room_name": event.room.name,
            "room_sid": event.room.sid, **outcome.answer()})
        return outcome

    def _replayed(self, event: WebhookEvent, decision: Decision, replay: EventRecord, metrics: Metrics,
                  source: Source) -> Outcome:
        metrics.add("ReplayedDeliveries", 1)
        metrics.flush()
        outcome = Outcome(decision, replay=replay)
        # The same line as a handled event's, so the saved log queries see replays too.
        log.info(f"{source} event handled", extra={
            "project": self.project, "event_type": event.event, "room_name": event.room.name,
            "room_sid": event.room.sid, **outcome.answer(), "deliveries": replay.deliveries})
        return outcome

    async def _dispatch(self, event: WebhookEvent, decision: Decision, event_id: str, metrics: Metrics, *,
                        read_first: bool = True) -> Outcome:
        """Claim and dispatch every planned slot; record every rejected one.

        Without `read_first`, each slot is claimed straight away: the claim is a
        conditional write that hands back the slot's current item when it already
        exists, so nothing is dispatched twice. It saves a DynamoDB round trip before
        CreateDispatch (see BENCHMARKS.md) and suits room_started, which opens a
        session whose slots don't exist yet. Joins and the sweeper keep the read:
        they mostly find their slots taken, and a read is cheaper than a transaction
        that fails and contends on the room's cap counter.
        """
        slots = await self.store.load_slots(event.room.sid) if read_first else {}
        results: list[SlotResult] = []
        for rejection in decision.rejected:
            slot = rejection.planned.slot
            # The write is conditional: False when the slot already had a record.
            if slot not in slots and await self.store.record_rejection(rejection.planned, event_id, rejection.reason):
                metrics.add("AgentsRejected", 1)
            results.append(SlotResult(slot, SlotOutcome.REJECTED, detail=rejection.reason))
        # Every sibling runs to its end before the answer: a 503 while a claim is still
        # mid-CreateDispatch would leave it frozen there on Lambda.
        done = await asyncio.gather(*(
            self.slot_dispatch.run(p, slots.get(p.slot), event_id, metrics) for p in decision.planned),
            return_exceptions=True)
        failures = [r for r in done if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        results += [r for r in done if isinstance(r, SlotResult)]
        return Outcome(decision, results)

    def _event_key(self, event: WebhookEvent, event_id: str) -> tuple[str, str]:
        """(pk, sk) of the event's record: the one place both the replay check and the record use."""
        return room_pk(event.room.sid or "-", self.project), event_sk(event_id)

    def _event_record(self, event: WebhookEvent, event_id: str, outcome: Outcome, source: Source) -> EventRecord:
        participant = event.participant if event.HasField("participant") else None
        pk, sk = self._event_key(event, event_id)
        return EventRecord(
            pk=pk, sk=sk, event_id=event_id, event_type=event.event,
            room_name=event.room.name, room_sid=event.room.sid,
            participant_identity=participant.identity if participant else "",
            participant_kind=participant_kind(participant) if participant else "",
            event_created_at=int(event.created_at),
            source=source, **outcome.answer())

"""verified event → decision → claim → dispatch → record.

The one place that strings the steps together. Each step lives in its own
module (policy, claims/dynamo, dispatcher); this module decides what the
webhook's answer is: `Outcome.retry` means "LiveKit, send this again".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.protocol.models import DisconnectReason
from livekit.protocol.webhook import WebhookEvent

from .claims import (
    ClaimInProgress,
    DispatchStore,
    LeaseLost,
    RoomCapReached,
    SlotAlreadyDispatched,
    SlotClosed,
    Status,
)
from .contract import Routing
from .dispatcher import LiveKitDispatcher, LiveKitError, LiveKitRejected, LiveKitUnavailable
from .events import Relevance, relevance
from .observability import Metrics, record_time_to_agent
from .outcomes import SlotOutcome, Source
from .policy import (
    Action,
    Decision,
    PlannedDispatch,
    decide,
    participant_kind,
    why_not_wanted,
)
from .records import EventRecord, SlotRecord
from .settings import DEFAULT_PROJECT, Project, Settings
from .table import event_sk, room_pk
from .wire import DISPATCH_ID_ATTRIBUTE, DONE_ATTRIBUTE

log = logging.getLogger("switchboard")

# An agent that leaves for one of these reasons was sent away, or its room is going
# away: its slot ends. CLIENT_INITIATED is not among them (see wire.DONE_ATTRIBUTE).
INTENDED_LEAVES = frozenset({
    DisconnectReason.ROOM_DELETED, DisconnectReason.ROOM_CLOSED, DisconnectReason.PARTICIPANT_REMOVED,
})


@dataclass(frozen=True)
class SlotResult:
    slot: str
    result: SlotOutcome
    retry: bool = False
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = {"slot": self.slot, "result": self.result.value}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class Outcome:
    decision: Decision
    slots: list[SlotResult] = field(default_factory=list)
    note: str = ""
    # A re-delivery of an event already answered 200: that first answer, as recorded.
    replay: EventRecord | None = None

    @property
    def retry(self) -> bool:
        return any(s.retry for s in self.slots)

    def answer(self) -> dict[str, Any]:
        """The webhook's answer body (beside the event id): the first answer again for a replay."""
        if self.replay is not None:
            return {"decision": dict(self.replay.decision), "outcome": dict(self.replay.outcome, replayed=True)}
        return {"decision": self.decision.summary(), "outcome": self.as_dict()}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retry": self.retry}
        if self.slots:
            out["slots"] = [s.as_dict() for s in self.slots]
        if self.note:
            out["note"] = self.note
        return out


def _changed_nothing(outcome: Outcome) -> bool:
    """Nothing was claimed, dispatched, settled or asked again: an ignore, or every slot already as wanted."""
    return not outcome.retry and not outcome.note and all(
        s.result is SlotOutcome.DUPLICATE for s in outcome.slots) and (
        bool(outcome.slots) or outcome.decision.action is Action.IGNORE)


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
        decision = decide(event, self.routing, self.settings, trigger="reconcile" if source is Source.SWEEP else None)
        if source is Source.WEBHOOK and decision.action is not Action.IGNORE:
            # Idempotency by event id: a re-delivery of an event already answered 200 is
            # answered from its record, in one conditional write (it also counts the delivery).
            # Anything less than a 200 on record (a 503, a crash, a lost lease's retry) is
            # handled again: every step below is safe to repeat.
            replay = await self.store.replay_event(*self._event_key(event))
            if replay is not None:
                metrics.add("ReplayedDeliveries", 1)
                metrics.flush()
                outcome = Outcome(decision, replay=replay)
                # The same line as a handled event's, so the saved log queries see replays too.
                log.info(f"{source} event handled", extra={
                    "event_type": event.event, "room_name": event.room.name, "room_sid": event.room.sid,
                    **outcome.answer(), "deliveries": replay.deliveries})
                return outcome
        try:
            if decision.action is Action.DISPATCH:
                # A delivered room_started claims without reading first: it is on the path that brings
                # a new room its agents, and its slots almost never exist yet (see _dispatch).
                first_event = source is Source.WEBHOOK and event.event == "room_started"
                outcome = await self._dispatch(event, decision, metrics, read_first=not first_event)
            elif decision.action is Action.CONFIRM_JOIN:
                outcome = await self._confirm_join(event, decision)
            elif decision.action is Action.AGENT_LEFT:
                outcome = await self._agent_left(event, decision, metrics)
            elif decision.action is Action.END_ROOM:
                ended = await self.store.end_room(event.room.sid) if event.room.sid else 0
                outcome = Outcome(decision, note=f"{ended} dispatch(es) ended")
            else:
                outcome = Outcome(decision)
            # `answered`: this record is a 200, so a re-delivery replays it (see replay_event).
            # A sweeper's look that changed nothing is not recorded: it passes every live room
            # every minute, and those records were most of a room's writes (BENCHMARKS.md, cost).
            if source is not Source.SWEEP or not _changed_nothing(outcome):
                await self.store.record_event(self._event_record(event, decision, outcome, source),
                                              received_at=received_at, answered=not outcome.retry)
        finally:
            metrics.flush()
        log.info(f"{source} event handled", extra={
            "project": self.project, "event_type": event.event, "room_name": event.room.name,
            "room_sid": event.room.sid,
            "decision": decision.summary(), "outcome": outcome.as_dict()})
        return outcome

    # --- dispatch ---------------------------------------------------------------

    async def _dispatch(self, event: WebhookEvent, decision: Decision, metrics: Metrics, *,
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
        event_id = event_id_of(event)
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
            self.dispatch_slot(p, slots.get(p.slot), event_id, metrics) for p in decision.planned),
            return_exceptions=True)
        failures = [r for r in done if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        results += [r for r in done if isinstance(r, SlotResult)]
        return Outcome(decision, results)

    async def dispatch_slot(self, planned: PlannedDispatch, existing: SlotRecord | None, event_id: str,
                            metrics: Metrics, *, redispatch: str | None = None) -> SlotResult:
        """claim → dispatch → record for one slot. `redispatch` replaces a dispatch whose agent never came or left."""
        slot = planned.slot
        try:
            claim = await self.store.claim(planned, event_id, existing, redispatch=redispatch)
        except SlotAlreadyDispatched as exc:
            metrics.add("DuplicateDeliveries", 1)
            return SlotResult(slot, SlotOutcome.DUPLICATE,
                              detail=f"already {exc.record.status if exc.record else None}")
        except ClaimInProgress:
            metrics.add("ClaimsInProgress", 1)
            return SlotResult(slot, SlotOutcome.IN_PROGRESS, retry=True, detail="another delivery holds the claim")
        except SlotClosed as exc:
            return SlotResult(slot, SlotOutcome.CLOSED, detail=str(exc))
        except RoomCapReached as exc:
            if await self.store.record_rejection(planned, event_id, str(exc)):
                metrics.add("AgentsRejected", 1)
            return SlotResult(slot, SlotOutcome.REJECTED, detail=str(exc))

        started = time.perf_counter()
        try:
            if redispatch and claim.previous_dispatch_id:
                # The stale dispatch goes first, so its job can't still bring a second agent.
                await self.livekit.delete(claim.previous_dispatch_id, planned.room_name)
            elif claim.takeover:
                if claim.replacing:
                    # The owner before us took the slot over to replace that dispatch and may
                    # have died before deleting it: finish its job, never adopt it.
                    await self.livekit.delete(claim.replacing, planned.room_name)
                # An earlier attempt may have reached LiveKit before it died or timed out.
                found = await self.livekit.find(planned, not_this=claim.replacing)
                if found:
                    try:
                        await self.store.mark_dispatched(claim, found, adopted=True)
                    except LeaseLost:
                        # Whoever took the slot over looks for the same dispatch and adopts it.
                        return SlotResult(slot, SlotOutcome.LEASE_LOST, detail=found)
                    return SlotResult(slot, SlotOutcome.ADOPTED, detail=found)
                if claim.last_chance:
                    why = (f"the last of {claim.attempt} attempt(s) never finished and LiveKit holds no "
                           "dispatch it made")
                    try:
                        await self.store.mark_failed(claim, why, retryable=False)
                    except LeaseLost:
                        return SlotResult(slot, SlotOutcome.LEASE_LOST, detail=why)
                    metrics.add("DispatchFailures", 1)
                    return SlotResult(slot, SlotOutcome.FAILED, detail=why)
            dispatch_id = await self.livekit.create(planned)
        except LiveKitError as exc:
            retryable = isinstance(exc, LiveKitUnavailable)
            try:
                await self.store.mark_failed(claim, str(exc), retryable=retryable)
            except LeaseLost:
                # Taken over while LiveKit was failing us: the new owner decides now.
                return SlotResult(slot, SlotOutcome.LEASE_LOST, detail=str(exc))
            metrics.add("DispatchFailures", 1)
            log.warning("dispatch failed", extra={"slot": slot, "error": str(exc), "retryable": retryable})
            return SlotResult(slot, SlotOutcome.FAILED,
                              retry=retryable and claim.attempt < self.settings.max_dispatch_attempts, detail=str(exc))
        metrics.add("CreateDispatchLatency", (time.perf_counter() - started) * 1000, "Milliseconds")
        try:
            await self.store.mark_dispatched(claim, dispatch_id)
        except LeaseLost as exc:
            await self._withdraw(planned, dispatch_id, exc.record)
            return SlotResult(slot, SlotOutcome.LEASE_LOST, detail=dispatch_id)
        metrics.add("Redispatches" if redispatch else "Dispatches", 1)
        return SlotResult(slot, SlotOutcome.REDISPATCHED if redispatch else SlotOutcome.DISPATCHED, detail=dispatch_id)

    async def _withdraw(self, planned: PlannedDispatch, dispatch_id: str, current: SlotRecord | None) -> None:
        """Our lease ran out while LiveKit created our dispatch, and someone else owns the slot now.

        Our dispatch goes only once the slot has settled on another: it holds a different
        dispatch, or it is over. While it is claimed, or failed and about to be retried,
        its next owner may adopt ours (it looks in LiveKit first): the sweeper's collector
        decides later, as it does for any dispatch that is not its slot's.
        """
        log.error("lease lost after dispatch", extra={"slot": planned.slot, "dispatch_id": dispatch_id})
        if current is not None and (current.dispatch_id == dispatch_id or current.being_claimed):
            return
        try:
            await self.livekit.delete(dispatch_id, planned.room_name)
        except LiveKitError as exc:
            log.warning("could not withdraw a dispatch; the sweeper collects it",
                        extra={"slot": planned.slot, "dispatch_id": dispatch_id, "error": str(exc)})

    # --- confirmation ---------------------------------------------------------

    async def _confirm_join(self, event: WebhookEvent, decision: Decision) -> Outcome:
        """Match an agent's own join to the dispatch that brought it: JOINED.

        Only on evidence of which dispatch it is: the agent's `switchboard.dispatch_id`
        attribute (our workers set it from their job), or LiveKit's record of which job
        the participant is. A name alone proves nothing (anyone's worker can register
        it). LiveKit's record lags the join by seconds, so an unmatched join is answered
        503 and LiveKit asks again; the sweeper settles whatever is left.
        """
        name, identity, sid = decision.agent_name, decision.agent_identity, event.participant.sid
        if not name or not event.room.sid:
            return Outcome(decision, note="agent participant without lk.agent_name or room")
        slots = await self.store.load_slots(event.room.sid)
        if any(r.status == Status.JOINED and r.agent_identity == identity and r.agent_sid in (None, sid)
               for r in slots.values()):
            return Outcome(decision, [SlotResult("", SlotOutcome.DUPLICATE, detail=f"{identity} already joined")])
        candidates = [r for r in slots.values() if r.agent_name == name
                      and r.status in (Status.CLAIMED, Status.DISPATCHED)]
        dispatch_id = event.participant.attributes.get(DISPATCH_ID_ATTRIBUTE, "")
        if not dispatch_id:
            if not candidates:
                return Outcome(decision, note=f"agent {name!r} joined without an open Switchboard dispatch")
            try:
                dispatch_id = await self.livekit.dispatch_of_participant(event.room.name, name, identity) or ""
            except LiveKitUnavailable as exc:
                return Outcome(decision, [SlotResult("", SlotOutcome.UNCONFIRMED, retry=True, detail=str(exc))])
            except LiveKitRejected as exc:
                return Outcome(decision, [SlotResult("", SlotOutcome.UNCONFIRMED, detail=str(exc))])
            if not dispatch_id:
                return Outcome(decision, [SlotResult("", SlotOutcome.UNCONFIRMED, retry=True,
                                                     detail=f"LiveKit does not yet say which dispatch {identity} is")])
        match = next((r for r in candidates if r.dispatch_id == dispatch_id), None)
        if match is None:
            if any(r.status == Status.CLAIMED for r in candidates):
                # The owner may be writing this very id now: ask again shortly.
                return Outcome(decision, [SlotResult("", SlotOutcome.UNCONFIRMED, retry=True,
                                                     detail=f"a claim of {name!r} is still being recorded")])
            return Outcome(decision, note=f"{identity} came from dispatch {dispatch_id}, not an open one of ours")
        joined = await self.store.mark_joined(event.room.sid, match.slot, identity, dispatch_id, sid)
        if joined:
            record_time_to_agent(event)
        return Outcome(decision, [SlotResult(match.slot, SlotOutcome.JOINED if joined else SlotOutcome.DUPLICATE,
                                             detail=identity)])

    async def _agent_left(self, event: WebhookEvent, decision: Decision, metrics: Metrics) -> Outcome:
        """An agent left (or its connection aborted): its slot ends if it meant to, else the room may get it back.

        Idempotent per event and per dispatch: a departure acts only on the slot whose
        current dispatch the leaving participant was (by its sid, its dispatch-id attribute
        or LiveKit's job), once; and never while that participant is still in the room.
        """
        identity = decision.agent_identity
        reason = DisconnectReason.Name(event.participant.disconnect_reason)
        if event.participant.disconnect_reason == DisconnectReason.DUPLICATE_IDENTITY:
            return Outcome(decision, note=f"{identity} reconnected under the same identity; its slot stands")
        try:
            record = await self._slot_of_agent(event, decision)
        except LiveKitUnavailable as exc:
            return Outcome(decision, [SlotResult("", SlotOutcome.UNCONFIRMED, retry=True, detail=str(exc))])
        if record is None:
            return Outcome(decision, note=f"{identity} held no open Switchboard dispatch")
        event_id = event_id_of(event)
        if record.event_id == event_id:
            return Outcome(decision, [SlotResult(record.slot, SlotOutcome.DUPLICATE,
                                                 detail="this departure was handled")])
        try:
            still_here = any(p.sid == event.participant.sid for p in await self.livekit.participants(event.room.name))
        except LiveKitUnavailable as exc:
            return Outcome(decision, [SlotResult(record.slot, SlotOutcome.UNCONFIRMED, retry=True, detail=str(exc))])
        except LiveKitRejected as exc:
            return Outcome(decision, [SlotResult(record.slot, SlotOutcome.UNCONFIRMED, detail=str(exc))])
        if still_here:
            # Stale (a reordered or replayed webhook): deleting a dispatch can't be undone.
            return Outcome(decision, [SlotResult(record.slot, SlotOutcome.STALE,
                                                 detail=f"{identity} ({event.participant.sid}) is still in the room")])
        done = event.participant.attributes.get(DONE_ATTRIBUTE, "")
        if event.participant.disconnect_reason == DisconnectReason.PARTICIPANT_REMOVED and not done:
            aimed_at = await self.store.removal_aimed_at(event.room.sid, identity)
            if aimed_at and aimed_at != event.participant.sid:
                # The sweeper removed a never-active session by its identity, which this agent
                # had taken meanwhile: nobody meant this agent to go.
                why = (f"agent {identity} was removed in place of the never-active session {aimed_at} "
                       f"the sweeper removed under its identity")
                return Outcome(decision, [await self.replace_agent(record, why, event_id, metrics)])
        if done or event.participant.disconnect_reason in INTENDED_LEAVES:
            why = f"agent {identity} left as intended ({reason}" + (f": {done[:200]})" if done else ")")
            settled = await self.store.settle(record, Status.ENDED, why)
            return Outcome(decision, [SlotResult(record.slot, SlotOutcome.ENDED if settled else SlotOutcome.DUPLICATE,
                                                 detail=why)])
        how = "left" if event.event == "participant_left" else "could not connect"
        result = await self.replace_agent(record, f"agent {identity} {how} ({reason})", event_id, metrics)
        return Outcome(decision, [result])

    async def _slot_of_agent(self, event: WebhookEvent, decision: Decision) -> SlotRecord | None:
        """The open slot whose current dispatch the leaving agent was, on evidence: the sid it
        joined with, its dispatch-id attribute, or (a join never confirmed, or a worker that
        sets no attribute) the job LiveKit says it is. A reused identity is not evidence."""
        if not event.room.sid:
            return None
        slots = [r for r in (await self.store.load_slots(event.room.sid)).values()
                 if r.status in (Status.DISPATCHED, Status.JOINED) and r.agent_name == decision.agent_name]
        sid = event.participant.sid
        by_sid = next((r for r in slots if r.status == Status.JOINED and sid and r.agent_sid == sid), None)
        if by_sid is not None:
            return by_sid
        dispatch_id = event.participant.attributes.get(DISPATCH_ID_ATTRIBUTE, "")
        if not dispatch_id and slots:
            try:
                dispatch_id = await self.livekit.dispatch_of_participant(
                    event.room.name, decision.agent_name, decision.agent_identity) or ""
            except LiveKitRejected:
                return None
        match = next((r for r in slots if dispatch_id and r.dispatch_id == dispatch_id), None)
        if match is not None and match.status == Status.JOINED and match.agent_sid not in ("", None, sid):
            return None  # its dispatch, but a later connection of it: that one is what the slot holds now
        return match

    async def replace_agent(self, record: SlotRecord, why: str, event_id: str, metrics: Metrics) -> SlotResult:
        """A slot's agent is gone without meaning to go: dispatch it again if the room still wants it.

        A room's own agent is wanted for as long as its room session is open, people or
        not: a room made ahead of its callers is waiting for them. An agent a participant
        brought is wanted while that participant is there (or, for a per-room rule,
        while anyone is). Bounded by max_dispatch_attempts. Whatever is decided is written
        on the slot, so it never waits on an agent that is gone.
        """
        planned = record.planned_again(trigger="agent_left")
        slot = planned.slot
        looked_at = self.clock()
        try:
            room = await self.livekit.room(planned.room_name)
            present = [] if room is None else await self.livekit.participants(planned.room_name)
        except LiveKitUnavailable as exc:
            return SlotResult(slot, SlotOutcome.UNCONFIRMED, retry=True, detail=str(exc))
        except LiveKitRejected as exc:
            return SlotResult(slot, SlotOutcome.UNCONFIRMED, detail=str(exc))
        if record.agent_sid and any(p.sid == record.agent_sid for p in present):
            # Look before deleting: the agent the slot holds is in the room now (what said it
            # was gone is older than this look).
            return SlotResult(slot, SlotOutcome.STALE, detail=f"{record.agent_identity} is in the room")
        if room is None or room.sid != planned.room_sid:
            not_wanted = "the room session is over"
        else:
            not_wanted = why_not_wanted(planned, room, present, self.routing, self.settings)
        if not_wanted:
            # As of the look, not of the write: someone who joined after it is a new presence.
            settled = await self.store.settle(record, Status.ENDED, f"{why}; not dispatched again: {not_wanted}",
                                              as_of=looked_at)
            return SlotResult(slot, SlotOutcome.ENDED if settled else SlotOutcome.DUPLICATE,
                              detail=f"{why}; {not_wanted}")
        if await self.give_up_if_spent(record, why, metrics):
            return SlotResult(slot, SlotOutcome.FAILED, detail=f"{why}; no attempts left")
        return await self.dispatch_slot(planned, record, event_id, metrics, redispatch=why)

    async def give_up_if_spent(self, record: SlotRecord, why: str, metrics: Metrics) -> bool:
        """If the slot has used its max_dispatch_attempts, settle it FAILED with `why` and say so."""
        attempts = record.attempts or 1  # (a record without attempts was never claimed: its first)
        if attempts < self.settings.max_dispatch_attempts:
            return False
        if await self.store.settle(record, Status.FAILED, f"{why}; gave up after {attempts} attempt(s)"):
            metrics.add("DispatchFailures", 1)
        return True

    # --- the event record ---------------------------------------------------

    def _event_key(self, event: WebhookEvent) -> tuple[str, str]:
        """(pk, sk) of the event's record: the one place both the replay check and the record use."""
        return room_pk(event.room.sid or "-", self.project), event_sk(event_id_of(event))

    def _event_record(self, event: WebhookEvent, decision: Decision, outcome: Outcome, source: Source) -> EventRecord:
        participant = event.participant if event.HasField("participant") else None
        pk, sk = self._event_key(event)
        return EventRecord(
            pk=pk, sk=sk, event_id=event_id_of(event), event_type=event.event,
            room_name=event.room.name, room_sid=event.room.sid,
            participant_identity=participant.identity if participant else "",
            participant_kind=participant_kind(participant) if participant else "",
            event_created_at=int(event.created_at),
            decision=decision.summary(), outcome=outcome.as_dict(), source=source)

"""Presence: what the agents' own comings and goings do to their slots.

An agent's join confirms the dispatch that brought it (DISPATCHED → JOINED); its
departure ends the slot if it meant to go, or has the slot dispatched again if the
room still wants it (through slot_dispatch, as any dispatch). Both act only on
evidence of which dispatch the participant is: workers reuse identities, and
webhooks come late, twice and out of order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from livekit.protocol.models import DisconnectReason
from livekit.protocol.webhook import WebhookEvent

from .answers import Outcome, SlotResult
from .claims import DispatchStore, Status
from .contract import Routing
from .dispatcher import LiveKitDispatcher, LiveKitRejected, LiveKitUnavailable
from .observability import Metrics, record_time_to_agent
from .outcomes import SlotOutcome
from .policy import Decision, why_not_wanted
from .records import SlotRecord
from .settings import Settings
from .slot_dispatch import SlotDispatch
from .wire import DISPATCH_ID_ATTRIBUTE, DONE_ATTRIBUTE

# An agent that leaves for one of these reasons was sent away, or its room is going
# away: its slot ends. CLIENT_INITIATED is not among them (see wire.DONE_ATTRIBUTE).
INTENDED_LEAVES = frozenset({
    DisconnectReason.ROOM_DELETED, DisconnectReason.ROOM_CLOSED, DisconnectReason.PARTICIPANT_REMOVED,
})



class Presence:
    def __init__(self, settings: Settings, store: DispatchStore, livekit: LiveKitDispatcher, routing: Routing,
                 slot_dispatch: SlotDispatch, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.livekit = livekit
        self.routing = routing
        self.slot_dispatch = slot_dispatch
        self.clock = clock

    async def confirm_join(self, event: WebhookEvent, decision: Decision) -> Outcome:
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

    async def agent_left(self, event: WebhookEvent, decision: Decision, event_id: str,
                         metrics: Metrics) -> Outcome:
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
        if await self.slot_dispatch.give_up_if_spent(record, why, metrics):
            return SlotResult(slot, SlotOutcome.FAILED, detail=f"{why}; no attempts left")
        return await self.slot_dispatch.run(planned, record, event_id, metrics, redispatch=why)

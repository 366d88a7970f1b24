"""The sweeper: what turns at-least-once (and sometimes never) webhooks into a promise.

One pass, run on a schedule (EventBridge on AWS, `switchboard sweep --every 5s`
locally), safe beside the handler and beside itself because it takes the same
claims:

1. Settle every slot on the work list (table index by_pending):
   - CLAIMED with an expired lease, or FAILED but retryable: dispatch again.
   - DISPATCHED whose agent has not joined within the deadline: if the agent is
     in fact in the room and active (its join webhook was dropped), record JOINED;
     if it is there but never became active, wait out a grace, then remove that
     session; if the room session is over, ENDED; otherwise delete the stale dispatch and create
     a new one, waiting twice as long each time, until the attempts run out and
     the slot is FAILED with the reason (the worker refused or did not answer in
     time, or no worker is registered for agent_name X).
2. Reconcile: every active room's metadata and participants are replayed
   through the same pipeline, so a room whose room_started or participant_joined
   webhook was dropped still gets its agents. A JOINED slot whose agent is no
   longer in the room, still JOINED a grace period after it was first found
   missing, lost its participant_left webhook: it goes where that webhook would
   have sent it (Presence.replace_agent). An agent session of ours that never
   became active, its slot moved on, is removed.

Over ~300 lines because it is one pass: both phases share the pass's room list,
its report and the removal of never-active sessions, and each reads LiveKit's
state the way the other relies on. What is not the pass is elsewhere: the
schedule (sweeps.py, sweep_lambda.py) and the dispatching (slot_dispatch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from .answers import Outcome
from .claims import ClaimError, Status, StoreUnavailable
from .dispatcher import LiveKitError, slot_of
from .observability import Metrics
from .outcomes import SlotOutcome, Source, SweepAction
from .pipeline import Pipeline
from .records import SlotRecord
from .timestamps import epoch
from .wire import DISPATCH_ID_ATTRIBUTE

log = logging.getLogger("switchboard.sweeper")


@dataclass
class SweepReport:
    actions: Counter[str] = field(default_factory=Counter)
    details: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, action: SweepAction | SlotOutcome, record: SlotRecord | None = None, detail: str = "", *,
            room: Room | None = None, room_sid: str = "", slot: str = "", of: SlotOutcome | None = None) -> None:
        """One action, on a slot's record, or on a slot of `room` (or of `room_sid`, an earlier
        session of it) that has none. A SlotOutcome alone is what dispatching the slot again did;
        `of` is what became of the slot an action prefixes (RECONCILED, MISSING_AGENT)."""
        name = f"{action}_{of}" if of is not None else str(action)
        self.actions[name] += 1
        entry: dict[str, Any] = {"action": name}
        if record:
            entry.update(room_name=record.room_name, room_sid=record.room_sid, slot=record.slot, status=record.status)
        elif room is not None:
            entry.update(room_name=room.name, room_sid=room_sid or room.sid, slot=slot, status=None)
        if detail:
            entry["detail"] = detail
        self.details.append(entry)

    def as_dict(self) -> dict[str, Any]:
        return {"actions": dict(self.actions), "details": self.details, "errors": self.errors}


class Sweeper:
    def __init__(self, pipeline: Pipeline, *, clock: Callable[[], float] = time.time) -> None:
        self.pipeline = pipeline
        self.settings = pipeline.settings
        self.store = pipeline.store
        self.livekit = pipeline.livekit
        self.slot_dispatch = pipeline.slot_dispatch
        self.presence = pipeline.presence
        self.clock = clock

    async def sweep(self) -> SweepReport:
        report = SweepReport()
        # Per project too: the alarms watch the service's sum, the Project dimension says which.
        metrics = Metrics(dimensions={"Project": self.pipeline.project})
        rooms = _LiveRooms(self.livekit)
        try:
            try:
                await rooms.all()
            except LiveKitError as exc:
                # Without LiveKit's rooms nothing can be judged: a refused key (say, rotated
                # away under a warm sweeper) must never read as "every room is gone".
                report.errors.append(f"LiveKit's rooms could not be listed, nothing was settled: {exc}")
                metrics.add("LiveKitListFailures", 1)
                return report
            try:
                work = await self.store.pending(self.settings.sweep_window_days)
            except StoreUnavailable as exc:
                report.errors.append(f"the dispatch log could not be read, nothing was settled: {exc}")
                return report
            for record in work:
                try:
                    await self._settle(record, report, metrics, rooms)
                except (LiveKitError, StoreUnavailable, ClaimError) as exc:
                    # One slot that can't be settled now must not keep the sweep from the rest.
                    report.errors.append(f"{record.slot} in {record.room_name}: {exc}")
            await self._reconcile(report, rooms, metrics)
        finally:
            metrics.add("SweepErrors", len(report.errors))
            metrics.flush()
            log.info("sweep done", extra=report.as_dict() | {"details": report.details[:50],
                                                            "project": self.pipeline.project})
        return report

    async def run_every(self, interval: float, stop: asyncio.Event,
                        on_report: Callable[[SweepReport], None] = lambda _: None) -> None:
        """A pass every `interval` seconds until `stop` is set (`switchboard sweep --every`).

        It ends on the event, not on cancellation alone: Python 3.11's wait_for, around
        a sweep's timed calls, can swallow a cancel and leave the loop running.
        """
        while not stop.is_set():
            on_report(await self.sweep())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    # --- 1. settle the work list -------------------------------------------------

    async def _settle(self, record: SlotRecord, report: SweepReport, metrics: Metrics,
                      rooms: _LiveRooms) -> None:
        now = self.clock()
        status = record.status
        attempts = record.attempts or 1  # (a record without attempts was never claimed: its first)
        if status == Status.CLAIMED and record.lease_expires_at > now:
            return report.add(SweepAction.CLAIM_IN_PROGRESS, record)
        if status == Status.FAILED and now < epoch(record.failed_at) + self._wait(attempts):
            return report.add(SweepAction.BACKING_OFF, record)
        if status == Status.DISPATCHED and now < epoch(record.dispatched_at) + self._wait(attempts):
            return report.add(SweepAction.AWAITING_JOIN, record)
        if status not in (Status.CLAIMED, Status.FAILED, Status.DISPATCHED):
            return

        # Whatever is done next is done in the slot's own room session, or not at all: a
        # room name used again must never get an earlier session's agent.
        room = await rooms.named(record.room_name)
        if room is None or room.sid != record.room_sid:
            # The list is from the start of the sweep; a session that started since is in no list.
            room = await self.livekit.room(record.room_name)
        if room is None or room.sid != record.room_sid:
            ended = await self.store.end_room(record.room_sid, "the room session is over")
            return report.add(SweepAction.ROOM_GONE, record, f"room session over; {ended} dispatch(es) ended")
        if status in (Status.CLAIMED, Status.FAILED):
            return await self._dispatch_again(record, report, metrics, redispatch=None)

        dispatch = next((d for d in await self.livekit.list(record.room_name) if d.id == record.dispatch_id), None)
        jobs = list(dispatch.state.jobs) if dispatch else []
        people = await self.livekit.participants(record.room_name)
        # The job's agent, if it is in the room: by identity, which workers reuse, so only a
        # participant whose dispatch-id attribute (when it has one) names this dispatch. And
        # only an active one: LiveKit's participant_joined means active, and a session whose
        # media never connected is in the list too, but is no agent anyone hears.
        present = {p.identity: p.sid for p in people if p.state == ParticipantInfo.State.ACTIVE
                   and p.attributes.get(DISPATCH_ID_ATTRIBUTE, record.dispatch_id) == record.dispatch_id}
        joined = next((j.state.participant_identity for j in jobs if j.state.participant_identity in present), "")
        if joined:
            await self.store.mark_joined(record.room_sid, record.slot, joined, record.dispatch_id, present[joined])
            return report.add(SweepAction.JOINED, record, f"{joined} is in the room; its join webhook was missed")

        stuck = [p for p in people
                 if _is_inactive_agent(p) and p.attributes[DISPATCH_ID_ATTRIBUTE] == record.dispatch_id]
        if any(self._may_still_connect(p) for p in stuck):
            return report.add(SweepAction.AGENT_CONNECTING, record, "its agent is in the room, not yet active")
        if stuck:
            # Removed before the slot is dispatched again: it holds the identity, and the room
            # would never empty while it stays (seen in the soak, issue 12).
            await self._remove_still_stuck(record.room_name, record.room_sid, stuck)
            why = _never_active(stuck[0], jobs)
        else:
            seen = None if jobs else await self._last_join(record.agent_name)
            why = _why_not_joined(record, jobs, self.settings.confirm_deadline_seconds, seen)
        if await self.slot_dispatch.give_up_if_spent(record, why, metrics):
            return report.add(SweepAction.FAILED, record, why)
        await self._dispatch_again(record, report, metrics, redispatch=why)

    async def _dispatch_again(self, record: SlotRecord, report: SweepReport, metrics: Metrics,
                              redispatch: str | None) -> None:
        planned = record.planned_again(trigger="sweep")
        result = await self.slot_dispatch.run(planned, record, f"sweep-{int(self.clock())}", metrics,
                                            redispatch=redispatch)
        report.add(result.result, record, redispatch or result.detail)

    async def _last_join(self, agent_name: str) -> SlotRecord | None:
        """The latest slot of `agent_name` whose agent joined, in the last hour: proof a worker was there.

        LiveKit can't tell: a dispatch shows no job alike when no worker of the name is
        registered, when the worker refused it, and when it did not answer in time.
        """
        records = await self.store.query_log(agent=agent_name, since=self.clock() - 3600, limit=50)
        return max((r for r in records if isinstance(r, SlotRecord) and r.joined_at), key=lambda r: r.joined_at,
                   default=None)

    async def _remove_still_stuck(self, room_name: str, room_sid: str,
                                  stuck: list[ParticipantInfo]) -> list[ParticipantInfo]:
        """Remove the sessions in `stuck` that are still there as they were; returns those removed.

        RemoveParticipant takes an identity, and workers reuse identities: look again just
        before, and remove an identity only while it is still that very session, not active.
        That narrows the window without closing it (the explorer found a healthy agent removed
        when the stuck session left and a new agent took its identity between the look and
        the removal), so the sid meant is noted first: a PARTICIPANT_REMOVED of any other
        session under the identity is then no intended departure, and its slot is dispatched
        again (Presence.agent_left)."""
        now = {p.identity: p for p in await self.livekit.participants(room_name)}
        removed = []
        for p in stuck:
            there = now.get(p.identity)
            if there is not None and there.sid == p.sid and there.state != ParticipantInfo.State.ACTIVE:
                await self.store.note_removal(room_sid, p.identity, p.sid)
                await self.livekit.remove_participant(room_name, p.identity)
                removed.append(p)
        return removed

    def _may_still_connect(self, participant: ParticipantInfo) -> bool:
        return self.clock() - participant.joined_at < self.settings.stuck_agent_grace_seconds

    def _wait(self, attempts: int) -> float:
        return float(self.settings.confirm_deadline_seconds * 2 ** max(0, attempts - 1))

    # --- 2. reconcile active rooms -------------------------------------------

    async def _reconcile(self, report: SweepReport, rooms: _LiveRooms, metrics: Metrics) -> None:
        for room in await rooms.all():
            try:
                await self._collect_orphans(room, report)
                await self._collect_stuck_agents(room, report)
                if room.metadata:
                    await self._reconcile_room(room, report, metrics)
            except (LiveKitError, StoreUnavailable, ClaimError) as exc:
                # One room that can't be read now must not keep the sweep from the rest.
                report.errors.append(f"reconcile {room.name}: {exc}")

    async def _collect_orphans(self, room: Room, report: SweepReport) -> None:
        """Delete every dispatch in the room that carries a Switchboard slot but is not that
        slot's current dispatch: a CreateDispatch that landed after its caller gave up, an
        owner's that lost its lease, one of an earlier session of the room name, one whose
        slot has settled. After this, each slot has at most one dispatch in LiveKit.

        A slot still being claimed, or failed and about to be retried, is left alone: its
        owner may be adopting that very dispatch (SlotDispatch.run looks first).
        Dispatches without a slot of ours (someone else's, LiveKit's default) are never touched.
        """
        dispatches = [(d, slot_of(d.metadata)) for d in await self.livekit.list(room.name)]
        ours = [(d, key) for d, key in dispatches if key is not None]
        if not ours:
            return
        # The room's session as it is now, read after the dispatches were: a dispatch of
        # another session than this one is of an earlier one (the sweep's own list of rooms
        # may predate a session that started since, whose dispatches are no orphans).
        current = await self.livekit.room(room.name)
        if current is None:
            return  # the room is gone, and its dispatches with it
        room = current
        slots = await self.store.load_slots(room.sid)
        for dispatch, (room_sid, slot) in ours:
            record = slots.get(slot) if room_sid == room.sid else None
            if record is None:
                if room_sid == room.sid:
                    continue  # a slot we have no record of: another deployment's, perhaps
                why = f"it was made for an earlier session of the room ({room_sid})"
            elif record.being_claimed:
                continue
            elif record.status in (Status.DISPATCHED, Status.JOINED):
                if record.dispatch_id == dispatch.id:
                    continue
                why = f"the slot's dispatch is {record.dispatch_id}"
            else:
                why = f"the slot is {record.status}"
            await self.livekit.delete(dispatch.id, room.name)
            if record is not None:
                await self.store.note_orphan(record, dispatch.id, why)
            report.add(SweepAction.ORPHAN_DELETED, record, f"{dispatch.id}: {why}", room=room, room_sid=room_sid,
                       slot=slot)

    async def _collect_stuck_agents(self, room: Room, report: SweepReport) -> None:
        """Remove every agent session of ours (it carries a Switchboard dispatch id) that has
        been connected for the grace period without ever becoming active, unless it is the
        current dispatch's agent of a slot still waiting for it (settling that slot removes
        it, with the reason, and dispatches again).

        Such a session is what a failed media connection leaves (LiveKit failed the job, the
        agent's SDK kept the signal connection): it publishes nothing and serves nobody, yet
        it holds an identity and keeps the room from ever emptying, beside the slot's
        replacement (seen in the soak, issue 12). Nothing else would ever remove it.
        """
        stuck = [p for p in await self.livekit.participants(room.name)
                 if _is_inactive_agent(p) and not self._may_still_connect(p)]
        if not stuck:
            return
        slots = await self.store.load_slots(room.sid)
        awaited = {r.dispatch_id for r in slots.values() if r.status == Status.DISPATCHED}
        unclaimed = [p for p in stuck if p.attributes[DISPATCH_ID_ATTRIBUTE] not in awaited]
        for p in await self._remove_still_stuck(room.name, room.sid, unclaimed) if unclaimed else []:
            report.add(SweepAction.STUCK_AGENT_REMOVED, None, f"{p.identity} ({p.sid}) of dispatch "
                       f"{p.attributes[DISPATCH_ID_ATTRIBUTE]}: connected at {p.joined_at}, never active", room=room)

    async def _reconcile_room(self, room: Room, report: SweepReport, metrics: Metrics) -> None:
        outcome = await self.pipeline.handle(
            WebhookEvent(event="room_started", id=f"SWEEP_{room.sid}", room=room), source=Source.SWEEP)
        _count(report, outcome, room)
        looked_at = self.clock()
        participants = await self.livekit.participants(room.name)
        for participant in participants:
            if participant.kind == ParticipantInfo.Kind.AGENT:
                continue
            outcome = await self.pipeline.handle(WebhookEvent(
                event="participant_joined", id=f"SWEEP_{room.sid}_{participant.sid}", room=room,
                participant=participant), source=Source.SWEEP)
            _count(report, outcome, room)
        await self._find_missing_agents(room, participants, looked_at, report, metrics)

    async def _find_missing_agents(self, room: Room, participants: list[ParticipantInfo], looked_at: float,
                                   report: SweepReport, metrics: Metrics) -> None:
        # By sid where the join recorded one: workers reuse identities, and another agent
        # under the same identity is not this one.
        present = {p.sid for p in participants} | {f"identity:{p.identity}" for p in participants}
        for record in (await self.store.load_slots(room.sid)).values():
            if record.status != Status.JOINED or epoch(record.joined_at) >= looked_at:
                continue  # (a join newer than the list of participants is not missing from it)
            seen = record.agent_sid or f"identity:{record.agent_identity}"
            if seen in present:
                if record.missing_since is not None:  # back (or only slow to be listed): start over
                    await self.store.mark_missing(record, seen_missing=False)
                continue
            noted = await self.store.mark_missing(record, seen_missing=True)
            if noted is None:
                continue  # moved on since it was read: its webhook got there first
            # A first sighting not on record reads as this one: never as missing since 1970.
            since = noted.missing_since if noted.missing_since is not None else self.clock()
            missing_for = self.clock() - float(since)
            if missing_for < self.settings.missing_agent_grace_seconds:
                report.add(SweepAction.AGENT_MISSING, noted,
                           f"{noted.agent_identity} not in the room for {missing_for:.0f} s")
                continue
            result = await self.presence.replace_agent(
                noted, f"agent {noted.agent_identity} left the room and its participant_left webhook "
                       f"never came", f"sweep-{int(self.clock())}", metrics)
            report.add(SweepAction.MISSING_AGENT, noted, result.detail, of=result.result)


class _LiveRooms:
    """LiveKit's active rooms, listed once per sweep however many slots ask about them."""

    def __init__(self, livekit: Any) -> None:
        self._livekit = livekit
        self._rooms: dict[str, Room] | None = None

    async def all(self) -> list[Room]:
        """Every active room. Raises LiveKitError when they can't be listed: an empty list would
        mean "every session is over", and the sweep would end slots that are not."""
        if self._rooms is None:
            self._rooms = {room.name: room for room in await self._livekit.rooms()}
        return list(self._rooms.values())

    async def named(self, room_name: str) -> Room | None:
        await self.all()
        assert self._rooms is not None
        return self._rooms.get(room_name)


def _count(report: SweepReport, outcome: Outcome, room: Room) -> None:
    for slot in outcome.slots:
        if slot.result in (SlotOutcome.DISPATCHED, SlotOutcome.ADOPTED, SlotOutcome.REJECTED) or slot.retry:
            report.add(SweepAction.RECONCILED, None, slot.detail, room=room, slot=slot.slot, of=slot.result)


def _is_inactive_agent(participant: ParticipantInfo) -> bool:
    """An agent session of ours (it carries a Switchboard dispatch id) that is not active."""
    return (participant.kind == ParticipantInfo.Kind.AGENT and participant.state != ParticipantInfo.State.ACTIVE
            and bool(participant.attributes.get(DISPATCH_ID_ATTRIBUTE)))


def _never_active(participant: ParticipantInfo, jobs: list[Any]) -> str:
    errors = [j.state.error for j in jobs if j.state.error]
    job = f" (its job: {errors[-1]})" if errors else ""
    return (f"agent {participant.identity} connected at {participant.joined_at} but never became active{job}; "
            f"the session was removed")


def _why_not_joined(record: SlotRecord, jobs: list[Any], deadline: float,
                    last_join: SlotRecord | None = None) -> str:
    agent = record.agent_name
    if not jobs:
        # LiveKit shows the same dispatch with no job whether no worker of the name is
        # registered, the worker turned the job down, or it did not answer within LiveKit's
        # wait (3 s); only an agent of the name seen joining tells the worker was there.
        if last_join is None:
            return (f"no worker registered for agent_name {agent}, or none took the job in time "
                    f"(LiveKit assigned no job; no {agent} agent joined any room in the last hour)")
        when = "after" if last_join.joined_at >= record.dispatched_at else "before"
        return (f"the {agent} worker refused the job or did not answer in time: at capacity, or stalled "
                f"(LiveKit assigned no job; a {agent} worker was registered: agent "
                f"{last_join.agent_identity or '?'} joined room {last_join.room_name or '?'} "
                f"at {last_join.joined_at}, {when} this dispatch)")
    errors = [j.state.error for j in jobs if j.state.error]
    if errors:
        return f"the {agent} job failed: {errors[-1]}"
    return f"the {agent} agent did not join within {deadline:g} s of its dispatch"


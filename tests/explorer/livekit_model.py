"""A model of livekit-server for the explorer: rooms, dispatches, jobs, participants, webhooks.

It keeps what the project's code relies on, as verified in livekit-server v1.13.5
and as the real-stack tests show it: CreateDispatch never de-duplicates and makes
a missing room; a dispatch nobody's worker takes has no job; DeleteDispatch ends the
job, and its agent leaves; ListDispatch keeps a job whose agent left; an agent joins
under its role's identity unless that identity is present; the same identity joining
again replaces the first (DUPLICATE_IDENTITY); an agent whose media connection fails stays
in the room, never active, with no participant_joined, until removed or until it gives up
by itself (no webhook either), and LiveKit's job shows it failed. Webhooks carry a fixed id and body, so
a re-delivery is the same event. It speaks the LiveKitDispatcher interface, pausing
on the Baton before every call, and can fail a call before or after it takes effect.
(Over ~300 lines: one model of one server; its parts change the same state.)
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from typing import Any

from livekit.protocol.agent import Job, JobState
from livekit.protocol.agent_dispatch import AgentDispatch, AgentDispatchState
from livekit.protocol.models import DisconnectReason, ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from handler.dispatcher import LiveKitRejected, LiveKitUnavailable, slot_of
from handler.policy import PlannedDispatch

from .scheduler import Baton

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


@dataclass
class Agent:
    participant: ParticipantInfo
    dispatch_id: str


@dataclass
class LiveRoom:
    room: Room
    people: dict[str, ParticipantInfo] = field(default_factory=dict)  # sid → participant
    agents: dict[str, Agent] = field(default_factory=dict)  # sid → agent


@dataclass
class Dispatch:
    id: str
    room_name: str
    agent_name: str
    metadata: str
    job_identity: str = ""
    job_error: str = ""
    deleted: bool = False


@dataclass
class Faults:
    """Chances, per call, of each way a call can go wrong."""

    unavailable: float = 0.0     # fails before it takes effect
    lost_answer: float = 0.0     # takes effect, then times out (create/delete)
    refused_rooms: float = 0.0   # ListRooms answers 401 (a rotated key)
    worker_refuses: float = 0.0  # a dispatch's worker does not take the job


class LiveKitModel:
    def __init__(self, baton: Baton, rng: random.Random, clock: Any, workers: set[str], faults: Faults) -> None:
        self.baton, self.rng, self.clock, self.workers, self.faults = baton, rng, clock, workers, faults
        self.live: dict[str, LiveRoom] = {}  # room name → its live session
        self.ended: dict[str, Room] = {}  # sid → a finished session
        self.dispatches: dict[str, Dispatch] = {}
        self.webhooks: list[WebhookEvent] = []  # LiveKit's queue, not yet delivered
        self.jobs: list[str] = []  # dispatch ids with a job whose agent has not joined yet
        self.creates = 0
        self.never_active = 0  # agents whose media connection failed
        self.removed = 0  # agents RemoveParticipant took out
        self.removed_active = 0  # of them, active ones: another session's identity, taken meanwhile
        self.gave_up = 0  # never-active sessions that left by themselves
        self.removing: list[tuple[str, str]] = []  # (room name, identity) of RemoveParticipants not yet applied
        # Told (dispatch id, agent sid, room sid) before a delete removes an agent that is in its room.
        self.on_delete_present: Any = None

    # --- what the world does ---------------------------------------------------

    def _emit(self, kind: str, room: Room, who: ParticipantInfo | None = None) -> None:
        event = WebhookEvent(event=kind, id=_id("EV"), created_at=int(self.clock()), room=room)
        if who is not None:
            event.participant.CopyFrom(who)
        self.webhooks.append(event)

    def start_room(self, name: str, metadata: dict[str, Any]) -> Room:
        room = Room(sid=_id("RM"), name=name, metadata=json.dumps(metadata), creation_time=int(self.clock()))
        self.live[name] = LiveRoom(room)
        self._emit("room_started", room)
        return room

    def finish_room(self, name: str) -> None:
        live = self.live.pop(name, None)
        if live is None:
            return
        for sid in list(live.agents):
            self._leave(live, sid, DisconnectReason.ROOM_DELETED, emit=False)
        for d in self.dispatches.values():
            if d.room_name == name:
                d.deleted = True
        self.ended[live.room.sid] = live.room
        self._emit("room_finished", live.room)

    def person_joins(self, name: str, identity: str) -> None:
        live = self.live.get(name)
        if live is None:
            return
        for sid, p in list(live.people.items()):
            if p.identity == identity:
                live.people.pop(sid)
                self._emit("participant_left", live.room, _with_reason(p, DisconnectReason.DUPLICATE_IDENTITY))
        who = ParticipantInfo(sid=_id("PA"), identity=identity, kind=ParticipantInfo.Kind.STANDARD,
                              state=ParticipantInfo.State.ACTIVE,
                              joined_at_ms=int(self.clock() * 1000), joined_at=int(self.clock()))
        live.people[who.sid] = who
        self._emit("participant_joined", live.room, who)

    def person_leaves(self, name: str) -> None:
        live = self.live.get(name)
        if live and live.people:
            sid = self.rng.choice(sorted(live.people))
            self._emit("participant_left", live.room, _with_reason(live.people.pop(sid),
                                                                 DisconnectReason.CLIENT_INITIATED))

    def agent_joins(self, dispatch_id: str, active: bool = True) -> None:
        """The job's worker accepted it earlier; its agent now connects under its role's identity.

        Not `active`: its media connection fails. The session stays in the room, never
        active, and LiveKit sends no participant_joined; the job is marked failed.
        """
        self.jobs.remove(dispatch_id)
        d = self.dispatches[dispatch_id]
        live = self.live.get(d.room_name)
        if d.deleted or live is None:
            return
        taken = {a.participant.identity for a in live.agents.values()}
        identity = next(i for i in (d.agent_name, *(f"{d.agent_name}-{n}" for n in range(2, 99))) if i not in taken)
        who = ParticipantInfo(sid=_id("PA"), identity=identity, kind=ParticipantInfo.Kind.AGENT,
                              state=ParticipantInfo.State.ACTIVE if active else ParticipantInfo.State.JOINED,
                              joined_at_ms=int(self.clock() * 1000), joined_at=int(self.clock()))
        who.attributes["lk.agent_name"] = d.agent_name
        who.attributes["switchboard.dispatch_id"] = d.id
        d.job_identity = identity
        d.job_error = "" if active else "agent connection failed"
        live.agents[who.sid] = Agent(who, d.id)
        if active:
            self._emit("participant_joined", live.room, who)
        else:
            self.never_active += 1

    def agent_drops(self, name: str) -> None:
        """An agent's connection is lost (its worker died): it leaves, unintended."""
        live = self.live.get(name)
        if live and live.agents:
            self._leave(live, self.rng.choice(sorted(live.agents)), DisconnectReason.CONNECTION_TIMEOUT)

    def stuck_agent_name(self, name: str, identity: str) -> str:
        """The agent name of the never-active session under `identity` in the room, or ""."""
        live = self.live.get(name)
        return next((a.participant.attributes["lk.agent_name"] for a in (live.agents.values() if live else ())
                     if a.participant.identity == identity and a.participant.state != ParticipantInfo.State.ACTIVE), "")

    def stuck_session_gives_up(self, name: str, identity: str) -> str:
        """The never-active session under `identity` leaves by itself (its SDK gave up, or
        LiveKit closed it); returns its agent's name, or "" if there was none. No
        participant_left: it was never announced as joined."""
        live = self.live.get(name)
        for sid, agent in list(live.agents.items()) if live else []:
            if agent.participant.identity == identity and agent.participant.state != ParticipantInfo.State.ACTIVE:
                live.agents.pop(sid)
                self.gave_up += 1
                return agent.participant.attributes["lk.agent_name"]
        return ""

    def _leave(self, live: LiveRoom, sid: str, reason: int, emit: bool = True) -> None:
        agent = live.agents.pop(sid)
        # LiveKit sends participant_left only for a participant it announced as joined.
        if emit and agent.participant.state == ParticipantInfo.State.ACTIVE:
            self._emit("participant_left", live.room, _with_reason(agent.participant, reason))

    # --- the LiveKitDispatcher interface ----------------------------------------

    async def _call(self, label: str) -> None:
        await self.baton.pause(f"livekit.{label}")
        if self.rng.random() < self.faults.unavailable:
            raise LiveKitUnavailable("LiveKit did not answer within 5 s")

    def _lost_answer(self) -> None:
        if self.rng.random() < self.faults.lost_answer:
            raise LiveKitUnavailable("LiveKit did not answer within 5 s")

    async def create(self, planned: PlannedDispatch) -> str:
        await self._call("create")
        if planned.room_name not in self.live:  # CreateDispatch makes a missing room
            self.live[planned.room_name] = LiveRoom(Room(sid=_id("RM"), name=planned.room_name))
        d = Dispatch(_id("AD"), planned.room_name, planned.agent_name, planned.job_metadata)
        self.dispatches[d.id] = d
        self.creates += 1
        if planned.agent_name in self.workers and self.rng.random() >= self.faults.worker_refuses:
            self.jobs.append(d.id)
        self._lost_answer()
        return d.id

    async def delete(self, dispatch_id: str, room_name: str) -> None:
        await self._call("delete")
        d = self.dispatches.get(dispatch_id)
        if d is None or d.deleted or d.room_name != room_name:
            return
        d.deleted = True
        if dispatch_id in self.jobs:
            self.jobs.remove(dispatch_id)
        live = self.live.get(room_name)
        # LiveKit ends the job: its agent disconnects.
        for sid, agent in list((live.agents if live else {}).items()):
            if agent.dispatch_id == dispatch_id:
                if self.on_delete_present is not None:
                    await self.on_delete_present(dispatch_id, sid, live.room.sid)
                self._leave(live, sid, DisconnectReason.CLIENT_INITIATED)
        self._lost_answer()

    async def participants(self, room_name: str) -> list[ParticipantInfo]:
        await self._call("list_participants")
        live = self.live.get(room_name)
        return [] if live is None else [*live.people.values(), *(a.participant for a in live.agents.values())]

    async def remove_participant(self, room_name: str, identity: str) -> None:
        self.removing.append((room_name, identity))  # the world may act in this call's window
        try:
            await self._call("remove_participant")
        finally:
            self.removing.remove((room_name, identity))
        live = self.live.get(room_name)
        if live is not None:
            for sid, agent in list(live.agents.items()):
                if agent.participant.identity == identity:
                    # By identity, as LiveKit does: it may hit a healthy agent that took the identity
                    # of the session the caller meant. Counted, not a violation in itself: the slot
                    # must get its agent back (the world's end check), and the log must say why.
                    if agent.participant.state == ParticipantInfo.State.ACTIVE:
                        self.removed_active += 1
                    self._leave(live, sid, DisconnectReason.PARTICIPANT_REMOVED)
                    self.removed += 1
            for sid, person in list(live.people.items()):
                if person.identity == identity:
                    live.people.pop(sid)
                    removed = _with_reason(person, DisconnectReason.PARTICIPANT_REMOVED)
                    self._emit("participant_left", live.room, removed)
        self._lost_answer()

    async def rooms(self) -> list[Room]:
        await self._call("list_rooms")
        if self.rng.random() < self.faults.refused_rooms:
            raise LiveKitRejected("LiveKit unauthenticated (HTTP 401): invalid token", status=401)
        return [live.room for live in self.live.values()]

    async def room(self, room_name: str) -> Room | None:
        await self._call("list_rooms")
        live = self.live.get(room_name)
        return live.room if live else None

    async def list(self, room_name: str) -> list[AgentDispatch]:
        await self._call("list_dispatch")
        return [self._wire(d) for d in self.dispatches.values() if d.room_name == room_name and not d.deleted]

    async def find(self, planned: PlannedDispatch, not_this: str = "") -> str | None:
        for d in await self.list(planned.room_name):
            if d.id != not_this and d.agent_name == planned.agent_name and slot_of(d.metadata) == (
                    planned.room_sid, planned.slot):
                return d.id
        return None

    async def dispatch_of_participant(self, room_name: str, agent_name: str, identity: str) -> str | None:
        for d in await self.list(room_name):
            if d.agent_name == agent_name and any(j.state.participant_identity == identity for j in d.state.jobs):
                return d.id
        return None

    async def aclose(self) -> None:
        return None

    def _wire(self, d: Dispatch) -> AgentDispatch:
        jobs = [Job(id=f"AJ_{d.id}", state=JobState(participant_identity=d.job_identity, error=d.job_error))] if (
            d.job_identity or d.id in self.jobs) else []
        return AgentDispatch(id=d.id, agent_name=d.agent_name, room=d.room_name, metadata=d.metadata,
                             state=AgentDispatchState(jobs=jobs))

    # --- what the invariants read -------------------------------------------------

    def live_dispatches_of(self, room: Room) -> dict[str, list[str]]:
        """Slot → ids of the dispatches LiveKit holds for it in this session."""
        out: dict[str, list[str]] = {}
        for d in self.dispatches.values():
            key = slot_of(d.metadata)
            if not d.deleted and key and key[0] == room.sid and d.room_name == room.name:
                out.setdefault(key[1], []).append(d.id)
        return out


def _with_reason(who: ParticipantInfo, reason: int) -> ParticipantInfo:
    out = ParticipantInfo()
    out.CopyFrom(who)
    out.disconnect_reason = reason
    return out

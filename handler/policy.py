"""The decision: which agents a verified webhook event calls for, and why.

A pure function of the event, the routing file and the settings. It does no I/O,
so every branch is a unit test, and the same decision is what the log records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from .contract import AgentPlan, MetadataError, MetadataNotJson, Routing, parse_room_metadata
from .settings import Settings
from .table import dispatch_sk
from .wire import (
    AGENT_NAME_ATTRIBUTE,
    JOB_PARTICIPANT_IDENTITY,
    JOB_ROOM_NAME,
    JOB_ROOM_SID,
    JOB_RULE,
    JOB_SLOT,
    JOB_TRIGGER,
)

_KIND_NAMES = {value: name.lower() for name, value in ParticipantInfo.Kind.items()}


class Action(StrEnum):
    DISPATCH = "dispatch"
    CONFIRM_JOIN = "confirm_join"
    AGENT_LEFT = "agent_left"
    END_ROOM = "end_room"
    IGNORE = "ignore"


class Rule(StrEnum):
    AGENTS = "agents"
    ON_PARTICIPANT_JOINED = "on_participant_joined"


@dataclass(frozen=True)
class PlannedDispatch:
    """One agent the room should have, and the slot that makes it exactly-once."""

    room_sid: str
    room_name: str
    agent_name: str
    rule: Rule
    trigger: str
    # The participant a per-participant slot belongs to; "" for a room slot.
    participant_identity: str = ""
    # Who set off a participant rule, recorded even when the slot is per room.
    triggered_by: str = ""
    # That participant's session (sid) and when it joined (LiveKit's clock, ms): a
    # participant rule's settled slot is opened again by a presence that joined after.
    participant_sid: str = field(default="", compare=False)
    participant_joined_ms: int = field(default=0, compare=False)
    # The rule's own metadata: the room creator's JSON object.
    rule_metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def slot(self) -> str:
        return dispatch_sk(self.agent_name, self.participant_identity)

    @cached_property
    def job_metadata(self) -> str:
        """The JSON the agent receives: the rule's metadata plus where and why it was sent.

        Built once per planned dispatch: the claim records it and CreateDispatch sends it."""
        data = dict(self.rule_metadata)
        data.update({JOB_ROOM_NAME: self.room_name, JOB_ROOM_SID: self.room_sid, JOB_TRIGGER: self.trigger,
                     JOB_RULE: str(self.rule), JOB_SLOT: self.slot})
        if self.triggered_by:
            data[JOB_PARTICIPANT_IDENTITY] = self.triggered_by
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Rejection:
    planned: PlannedDispatch
    reason: str


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    planned: tuple[PlannedDispatch, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    error: str | None = None
    # For CONFIRM_JOIN / AGENT_LEFT: the agent participant seen.
    agent_name: str = ""
    agent_identity: str = ""

    def summary(self) -> dict[str, Any]:
        """What the event record keeps of this decision."""
        out: dict[str, Any] = {"action": str(self.action), "reason": self.reason}
        if self.planned:
            out["planned"] = [p.slot for p in self.planned]
        if self.rejected:
            out["rejected"] = [{"slot": r.planned.slot, "reason": r.reason} for r in self.rejected]
        if self.error:
            out["error"] = self.error
        if self.agent_name:
            out["agent"] = {"name": self.agent_name, "identity": self.agent_identity}
        return out


# participant_connection_aborted is LiveKit's participant_left for a participant that
# never finished connecting. For an agent it matters as much: LiveKit ends the job of
# an agent participant that leaves, however far it got, even if its SDK then connects again.
AGENT_EVENTS = frozenset({"participant_joined", "participant_left", "participant_connection_aborted"})


def participant_kind(participant: ParticipantInfo) -> str:
    return _KIND_NAMES.get(participant.kind, f"kind_{participant.kind}")


def decide(event: WebhookEvent, routing: Routing, settings: Settings, *, trigger: str | None = None) -> Decision:
    """`trigger` names what set the dispatches off when it isn't the event itself (the sweeper's "reconcile")."""
    kind = event.event
    if kind in ("room_started", "participant_joined") and not event.room.sid:
        return Decision(Action.IGNORE, f"{kind} without a room sid")

    if kind == "room_finished":
        return Decision(Action.END_ROOM, "room finished: open dispatches end")

    if kind in AGENT_EVENTS and event.participant.kind == ParticipantInfo.Kind.AGENT:
        # An agent's own join never triggers a dispatch (it would loop); it confirms one.
        name = event.participant.attributes.get(AGENT_NAME_ATTRIBUTE, "")
        if kind == "participant_joined":
            return Decision(Action.CONFIRM_JOIN, "an agent joined: it confirms its dispatch and triggers none",
                            agent_name=name, agent_identity=event.participant.identity)
        return Decision(Action.AGENT_LEFT, "an agent left: its slot ends if it meant to, else it is dispatched "
                        "again while the room wants it", agent_name=name, agent_identity=event.participant.identity)

    if kind not in ("room_started", "participant_joined"):
        return Decision(Action.IGNORE, f"{kind or 'unnamed'} events do not dispatch agents")

    try:
        metadata = parse_room_metadata(event.room.metadata, max_bytes=settings.max_metadata_bytes)
    except MetadataNotJson as exc:
        return Decision(Action.IGNORE, "room metadata is not JSON: it asks for no agents", error=str(exc))
    except MetadataError as exc:
        return Decision(Action.IGNORE, "room metadata is invalid", error=str(exc))
    if metadata is None:
        if not event.room.metadata.strip():
            return Decision(Action.IGNORE, "room has no metadata: it asks for no agents")
        return Decision(Action.IGNORE, "room metadata uses none of Switchboard's keys: it asks for no agents")

    plan: AgentPlan = metadata
    if metadata.profile is not None:
        profile = routing.profiles.get(metadata.profile)
        if profile is None:
            return Decision(Action.IGNORE, "room metadata names an unknown profile",
                            error=f"profile {metadata.profile!r} is not in the routing file")
        plan = profile.merged_with(metadata)

    planned = _plan(event, plan, trigger or kind)
    if not planned:
        what = "room_started" if kind == "room_started" else f"a {participant_kind(event.participant)} participant"
        return Decision(Action.IGNORE, f"no rule applies to {what}")
    return _screen(planned, settings)


def why_not_wanted(planned: PlannedDispatch, room: Room, present: Iterable[ParticipantInfo],
                   routing: Routing, settings: Settings) -> str:
    """Why the room, as it is now, no longer wants `planned`'s slot; "" while its metadata
    (and, for a participant rule, someone there now) still asks for it. The same decision as
    the events that planned it: room_started for a room agent, each person's join for a
    participant rule, decided again on the people there now with their real kinds."""
    if planned.rule is Rule.AGENTS:
        probes = [WebhookEvent(event="room_started", room=room)]
    else:
        people = [p for p in present if p.kind != ParticipantInfo.Kind.AGENT
                  and (not planned.participant_identity or p.identity == planned.participant_identity)]
        if not people:
            return f"{planned.participant_identity} has left too" if planned.participant_identity \
                else "nobody is left in the room"
        probes = [WebhookEvent(event="participant_joined", room=room, participant=p) for p in people]
    if any(p.slot == planned.slot for probe in probes for p in decide(probe, routing, settings).planned):
        return ""
    return f"the room's metadata no longer asks for {planned.slot}"


def _plan(event: WebhookEvent, plan: AgentPlan, trigger: str) -> list[PlannedDispatch]:
    room = event.room
    # Room agents are planned on every human join as well as on room_started: the
    # slot claim makes the repeat free of effect, and a dropped room_started
    # webhook then costs nothing but a later first join.
    planned = [PlannedDispatch(room_sid=room.sid, room_name=room.name, trigger=trigger, agent_name=r.name,
                               rule=Rule.AGENTS, rule_metadata=r.metadata)
               for r in plan.agents]
    if event.event != "participant_joined":
        return planned
    participant = event.participant
    kind = participant_kind(participant)
    for rule in plan.on_participant_joined:
        if kind not in rule.kinds:
            continue
        planned.append(PlannedDispatch(
            room_sid=room.sid, room_name=room.name, trigger=trigger, agent_name=rule.name,
            rule=Rule.ON_PARTICIPANT_JOINED, rule_metadata=rule.metadata,
            participant_identity=participant.identity if rule.per == "participant" else "",
            triggered_by=participant.identity, participant_sid=participant.sid,
            participant_joined_ms=participant.joined_at_ms or participant.joined_at * 1000))
    return planned


def _screen(planned: list[PlannedDispatch], settings: Settings) -> Decision:
    """Apply the allowlist and the per-room cap, in the order the metadata lists agents."""
    accepted: list[PlannedDispatch] = []
    rejected: list[Rejection] = []
    seen: set[str] = set()
    for p in planned:
        if p.slot in seen:
            continue  # a per-room participant rule naming a room agent: one slot, one agent
        seen.add(p.slot)
        if p.agent_name not in settings.allowed_agents:
            rejected.append(Rejection(p, f"agent {p.agent_name!r} is not in this deployment's allowlist"))
        elif len(accepted) >= settings.max_agents_per_room:
            rejected.append(Rejection(p, f"room cap of {settings.max_agents_per_room} agents reached"))
        else:
            accepted.append(p)
    reason = f"{len(accepted)} agent(s) to dispatch" + (f", {len(rejected)} rejected" if rejected else "")
    return Decision(Action.DISPATCH, reason, tuple(accepted), tuple(rejected))

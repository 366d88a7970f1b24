"""What agents show each other, and any frontend, through participant attributes.

    role                dispatcher | driver | …     set when the job is accepted
    drill.state         waiting | listening | speaking | done
    drill.counterpart   the identity this agent listens to
    drill.said          lines spoken so far
    drill.heard         the counterpart's utterances heard so far (VAD ends of speech)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from livekit import rtc

from .identity import ROLE_ATTRIBUTE

if TYPE_CHECKING:
    from livekit.rtc.room import EventTypes

STATE_ATTRIBUTE = "drill.state"
COUNTERPART_ATTRIBUTE = "drill.counterpart"
SAID_ATTRIBUTE = "drill.said"
HEARD_ATTRIBUTE = "drill.heard"

_ROOM_EVENTS: tuple[EventTypes, ...] = ("participant_connected", "participant_attributes_changed")


class DrillState(StrEnum):
    WAITING = "waiting"
    LISTENING = "listening"
    SPEAKING = "speaking"
    DONE = "done"


def is_counterpart(participant: rtc.RemoteParticipant, my_role: str, wanted_role: str | None) -> bool:
    """Another agent with a role: the one named by `wanted_role`, or any other role."""
    role = participant.attributes.get(ROLE_ATTRIBUTE, "")
    if participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT or not role:
        return False
    return role == wanted_role if wanted_role else role != my_role


async def _wait_in_room(room: rtc.Room, check: Callable[[], rtc.RemoteParticipant | None]) -> rtc.RemoteParticipant:
    changed = asyncio.Event()

    def wake(*_: object) -> None:
        changed.set()

    for event in _ROOM_EVENTS:
        room.on(event, wake)
    try:
        while (found := check()) is None:
            await changed.wait()
            changed.clear()
        return found
    finally:
        for event in _ROOM_EVENTS:
            room.off(event, wake)


async def wait_for_counterpart(room: rtc.Room, my_role: str, wanted_role: str | None) -> rtc.RemoteParticipant:
    def check() -> rtc.RemoteParticipant | None:
        candidates = [p for p in room.remote_participants.values() if is_counterpart(p, my_role, wanted_role)]
        # The lowest identity: "driver" before "driver-2", the same pick on every agent.
        return min(candidates, key=lambda p: p.identity) if candidates else None

    return await _wait_in_room(room, check)


async def wait_for_state(room: rtc.Room, identity: str, states: set[DrillState]) -> rtc.RemoteParticipant:
    def check() -> rtc.RemoteParticipant | None:
        p = room.remote_participants.get(identity)
        return p if p is not None and p.attributes.get(STATE_ATTRIBUTE) in states else None

    return await _wait_in_room(room, check)

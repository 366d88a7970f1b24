"""Deterministic participant identities, so a frontend finds an agent by its role.

The first agent of a role in a room is the role's name ("driver"); another one
while it is there gets a suffix ("driver-2", "driver-3", …). Two agents must
never share an identity: LiveKit would disconnect the first when the second joins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Any

from livekit.protocol import agent as agent_proto

log = logging.getLogger("switchboard.worker")

ROLE_ATTRIBUTE = "role"
# How long an accepted identity stays reserved in this process: long enough
# for the agent to show up in the room's participant list.
RESERVATION_SECONDS = 60.0


def choose_identity(role: str, taken: Collection[str]) -> str:
    if role not in taken:
        return role
    n = 2
    while f"{role}-{n}" in taken:
        n += 1
    return f"{role}-{n}"


_ENDED = {agent_proto.JobStatus.JS_SUCCESS, agent_proto.JobStatus.JS_FAILED, agent_proto.JobStatus.JS_CANCELLED}


async def identities_in_room(lk: Any, room_name: str, *, except_job: str = "") -> set[str]:
    """Identities present in the room, plus those LiveKit assigned to jobs not yet joined.

    `lk` is a livekit.api.LiveKitAPI. The dispatch state covers the gap between
    another worker accepting a job and its agent appearing as a participant.
    """
    from livekit import api

    participants, dispatches = await asyncio.gather(
        lk.room.list_participants(api.ListParticipantsRequest(room=room_name)),
        lk.agent_dispatch.list_dispatch(room_name))
    taken = {p.identity for p in participants.participants}
    for dispatch in dispatches:
        for job in dispatch.state.jobs:
            if job.id != except_job and job.state.participant_identity and job.state.status not in _ENDED:
                taken.add(job.state.participant_identity)
    return taken


class IdentityBook:
    """This process's recent picks, so two requests for one room never race to one identity."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._reserved: dict[str, dict[str, float]] = {}  # room sid → identity → expiry

    async def pick(self, room_sid: str, role: str, taken: Collection[str]) -> str:
        async with self._lock:
            now = self._clock()
            for sid in list(self._reserved):
                live = {i: exp for i, exp in self._reserved[sid].items() if exp > now}
                if live:
                    self._reserved[sid] = live
                else:
                    del self._reserved[sid]
            reserved = self._reserved.setdefault(room_sid, {})
            identity = choose_identity(role, set(taken) | reserved.keys())
            reserved[identity] = now + RESERVATION_SECONDS
            return identity

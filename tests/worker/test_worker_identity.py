"""Identities a frontend can find: the role's name first, a suffix only when it is taken."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from livekit.protocol import agent as agent_proto

from worker.identity import RESERVATION_SECONDS, IdentityBook, choose_identity, identities_in_room

pytestmark = pytest.mark.anyio


def test_the_first_agent_of_a_role_is_the_role_name():
    assert choose_identity("driver", set()) == "driver"
    assert choose_identity("driver", {"dispatcher", "alice"}) == "driver"


def test_a_taken_identity_gets_the_lowest_free_suffix():
    assert choose_identity("driver", {"driver"}) == "driver-2"
    assert choose_identity("driver", {"driver", "driver-2"}) == "driver-3"
    # A gap left by an agent that went away is filled again.
    assert choose_identity("driver", {"driver", "driver-3"}) == "driver-2"


def test_a_human_holding_the_role_name_pushes_the_agent_to_a_suffix():
    assert choose_identity("dispatcher", ["dispatcher"]) == "dispatcher-2"


def test_the_choice_is_deterministic():
    taken = {"driver", "driver-2", "dispatcher"}
    assert {choose_identity("driver", taken) for _ in range(5)} == {"driver-3"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_requests_for_one_room_at_once_never_get_the_same_identity():
    book = IdentityBook()
    picks = await asyncio.gather(*(book.pick("RM_1", "driver", set()) for _ in range(4)))
    assert sorted(picks) == ["driver", "driver-2", "driver-3", "driver-4"]


async def test_reservations_are_per_room():
    book = IdentityBook()
    assert await book.pick("RM_1", "driver", set()) == "driver"
    assert await book.pick("RM_2", "driver", set()) == "driver"


async def test_a_reservation_expires_once_the_room_list_can_show_the_agent():
    clock = Clock()
    book = IdentityBook(clock)
    assert await book.pick("RM_1", "driver", set()) == "driver"
    clock.now += RESERVATION_SECONDS + 1
    # The first driver left before its reservation ran out: the name is free again.
    assert await book.pick("RM_1", "driver", set()) == "driver"
    # While it is in the room, the room's own list keeps it taken.
    clock.now += RESERVATION_SECONDS + 1
    assert await book.pick("RM_1", "driver", {"driver"}) == "driver-2"


def job(job_id: str, identity: str, status: int) -> SimpleNamespace:
    return SimpleNamespace(id=job_id, state=SimpleNamespace(participant_identity=identity, status=status))


class FakeLiveKit:
    """The two RoomService/AgentDispatchService calls identities_in_room makes."""

    def __init__(self, participants: list[str], jobs: list[SimpleNamespace]) -> None:
        self.room = SimpleNamespace(list_participants=self._participants)
        self.agent_dispatch = SimpleNamespace(list_dispatch=self._dispatches)
        self._names, self._jobs = participants, jobs
        self.asked: list[str] = []

    async def _participants(self, request):
        self.asked.append(request.room)
        return SimpleNamespace(participants=[SimpleNamespace(identity=i) for i in self._names])

    async def _dispatches(self, room_name):
        self.asked.append(room_name)
        return [SimpleNamespace(state=SimpleNamespace(jobs=self._jobs))]


async def test_taken_identities_include_participants_and_jobs_assigned_but_not_joined():
    lk = FakeLiveKit(["alice", "dispatcher"], [
        job("AJ_1", "driver", agent_proto.JobStatus.JS_RUNNING),  # accepted elsewhere, not joined yet
        job("AJ_2", "driver-2", agent_proto.JobStatus.JS_SUCCESS),  # ended: its name is free
        job("AJ_3", "driver-3", agent_proto.JobStatus.JS_FAILED),
        job("AJ_4", "", agent_proto.JobStatus.JS_PENDING),  # not assigned yet
        job("AJ_ME", "driver-9", agent_proto.JobStatus.JS_RUNNING),  # the request being answered
    ])
    taken = await identities_in_room(lk, "drill-1", except_job="AJ_ME")
    assert taken == {"alice", "dispatcher", "driver"}
    assert lk.asked == ["drill-1", "drill-1"]
    assert choose_identity("driver", taken) == "driver-2"


def test_the_dispatch_id_attribute_is_the_one_the_handler_matches_joins_by():
    # One name, handler/wire.py's, on both sides; its value is what agents written elsewhere set.
    from handler import presence, sweeper, wire
    from worker import server

    assert server.DISPATCH_ID_ATTRIBUTE is presence.DISPATCH_ID_ATTRIBUTE is sweeper.DISPATCH_ID_ATTRIBUTE \
        is wire.DISPATCH_ID_ATTRIBUTE
    assert wire.DISPATCH_ID_ATTRIBUTE == "switchboard.dispatch_id"

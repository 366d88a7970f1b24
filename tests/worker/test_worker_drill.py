"""Local mode's drill: its turn-taking (the initiator opens, then one line per utterance heard),
and, in a real room, how it ends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from livekit import api, rtc

from infra.stack import DEV_API_KEY, DEV_API_SECRET
from worker import drill as drill_module
from worker.drill import VAD_MIN_SILENCE_SECONDS, Drill, Turns, load_vad
from worker.espeak import EspeakTTS
from worker.identity import ROLE_ATTRIBUTE
from worker.persona import resolve_persona
from worker.presence import STATE_ATTRIBUTE, DrillState
from worker.roster import get_role


def test_the_initiator_opens_and_answers_each_utterance_with_its_next_line():
    turns = Turns(["Radio check.", "Gate four."], speaks_first=True)
    assert turns.opening() == "Radio check."
    assert (turns.said, turns.done) == (1, False)
    assert turns.answer() == "Gate four."
    assert turns.done
    assert turns.answer() is None  # it still hears the last answer, and stays quiet


def test_the_other_side_waits_to_hear_something_before_its_first_line():
    turns = Turns(["Loud and clear."], speaks_first=False)
    assert turns.opening() is None
    assert turns.said == 0
    assert turns.answer() == "Loud and clear."
    assert turns.answer() is None and turns.said == 1


def test_two_scripts_interleave_into_one_conversation():
    dispatcher = Turns(["d1", "d2", "d3"], speaks_first=True)
    driver = Turns(["r1", "r2"], speaks_first=False)
    spoken = [dispatcher.opening()]
    speakers = [driver, dispatcher]
    while (line := speakers[0].answer()) is not None:  # each side answers what it just heard
        spoken.append(line)
        speakers.reverse()
    assert spoken == ["d1", "r1", "d2", "r2", "d3"]


def test_an_empty_script_is_a_silent_listener():
    turns = Turns([], speaks_first=True)
    assert turns.opening() is None and turns.done


def test_the_vad_waits_out_the_pause_between_two_sentences_of_one_line():
    # espeak-ng pauses ~0.5 s between sentences; ending the turn there would
    # make the other side answer mid-line.
    assert VAD_MIN_SILENCE_SECONDS >= 0.7


# --- a drill in a real room, ended as its round ends ------------------------------------------
# A job ends (LiveKit terminates it when its room is deleted) just as its counterpart leaves,
# since deleting a room does both. The job's end is a cancel of the drill's task; if that cancel
# arrives while the round is stopping its own helpers and is swallowed there, the drill goes on
# waiting for a next counterpart that never comes, and the job holds its place in the worker's
# capacity for good (found by tests/test_capacity.py: one room deletion in about nine).

def _token(identity: str, room: str, **attributes: str) -> str:
    return (api.AccessToken(DEV_API_KEY, DEV_API_SECRET).with_identity(identity).with_kind("agent")
            .with_attributes(attributes)
            .with_grants(api.VideoGrants(room_join=True, room=room, can_update_own_metadata=True)).to_jwt())


@pytest.fixture
async def drill_in_room(local_stack, room):
    """A driver's drill (the listening side: it never speaks first) with a dispatcher agent in
    its room, both real connections; yields (drill, its room, the dispatcher's room)."""
    url = local_stack.livekit_url.replace("http", "ws")
    rooms = [rtc.Room(), rtc.Room()]
    mine, theirs = rooms
    await mine.connect(url, _token("driver", room.name, **{ROLE_ATTRIBUTE: "driver"}),
                       rtc.RoomOptions(auto_subscribe=False))
    await theirs.connect(url, _token("dispatcher", room.name, **{ROLE_ATTRIBUTE: "dispatcher"}),
                         rtc.RoomOptions(auto_subscribe=False))
    drill = Drill(mine, resolve_persona(get_role("driver"), ""), load_vad(), EspeakTTS())
    try:
        yield drill, mine, theirs
    finally:
        await drill.aclose()
        for r in rooms:
            await r.disconnect()


async def _listening(room: rtc.Room) -> None:
    deadline = time.monotonic() + 30
    while room.local_participant.attributes.get(STATE_ATTRIBUTE) != DrillState.LISTENING:
        assert time.monotonic() < deadline, room.local_participant.attributes
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_a_drill_cancelled_as_its_round_ends_ends(drill_in_room, monkeypatch):
    drill, mine, theirs = drill_in_room
    job: asyncio.Task[None] | None = None
    stop_helpers = drill_module.cancel_and_wait
    ended: list[bool] = []

    async def job_ends_meanwhile(*tasks: asyncio.Future[Any]) -> None:
        # The job's end, just as the round stops its helpers. (Not from inside the talk task's
        # own cancel: when the counterpart's audio ends before its leave is seen, the talk has
        # already returned, nothing is cancelled, and the test would test nothing.)
        assert job is not None
        if not ended:  # once: the round's call, the first; the drill's other cleanup calls it too
            ended.append(job.cancel())
        await stop_helpers(*tasks)

    monkeypatch.setattr(drill_module, "cancel_and_wait", job_ends_meanwhile)
    job = asyncio.create_task(drill.run())
    await _listening(mine)
    await theirs.disconnect()  # the counterpart leaves: the round ends
    done, _ = await asyncio.wait({job}, timeout=15)
    assert job in done, "the drill swallowed its job's cancel and went on waiting for a counterpart"
    assert job.cancelled()

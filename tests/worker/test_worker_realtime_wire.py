"""Realtime mode on the wire: the two role workers against a local realtime-protocol server.

Real livekit-server, handler and DynamoDB Local (the session's local_stack); both
`python -m worker <role> start` processes in realtime mode, their livekit-plugins-openai
base URL pointed at tests/fake_realtime.py, which speaks enough of OpenAI's realtime
protocol (GA events) to accept a session and answer a response with a tone. A listener in
the room measures what it hears.

What this proves: each persona's model, voice and instructions reach session.update
(and its temperature cannot: the protocol has no such field); the audio the server
sends is published into the room as the agent's own track; a dropped model connection
is logged and restored with the same session; a model that stays unreachable ends the
job, so the agent leaves the room. What it does not: anything about a real model (speech,
turn detection, latency, OpenAI's acceptance of the session), since no model is involved.
"""

from __future__ import annotations

import json

import pytest
from livekit import api, rtc

from infra.room import create_room
from infra.stack import DEV_API_KEY, DEV_API_SECRET
from infra.workers import ROLES, wait_registered, worker_commands
from tests.fake_realtime import FakeRealtime
from tests.livekit_helpers import eventually, lk_api
from worker.config import WorkerSettings
from worker.listen import Listener
from worker.persona import Persona
from worker.realtime import instructions_for
from worker.roster import get_role

pytestmark = pytest.mark.anyio

DEADLINE = 90  # generous: two workers and the stack share two cores
MODEL = WorkerSettings().realtime_model


def api_key(role: str) -> str:
    """Not a key: each worker gets its own, so the fake server can refuse one of them."""
    return f"sk-fake-{role}"


@pytest.fixture(scope="module")
async def fake_realtime():
    server = await FakeRealtime().start()
    yield server
    await server.aclose()


@pytest.fixture(scope="module")
def realtime_workers(local_stack, fake_realtime):
    services = {}
    env = {"SWITCHBOARD_WORKER_AUDIO_MODE": "realtime", "OPENAI_BASE_URL": fake_realtime.base_url,
           "SWITCHBOARD_WORKER_DRAIN_TIMEOUT_SECONDS": "5"}
    try:
        for command, role in zip(worker_commands(local_stack.livekit_url, command="start", env=env), ROLES):
            services[role] = local_stack.stack.start_process(
                f"{command.name}-realtime", command.argv, command.env | {"OPENAI_API_KEY": api_key(role)})
        wait_registered(list(services.values()), timeout=DEADLINE)
        yield services
    finally:
        for service in services.values():
            service.stop()
            print(f"--- {service.name} (shown when the test fails)\n{service.log_tail(60)}")


@pytest.fixture(autouse=True)
async def room_deleted_after(local_stack, room_name):
    """Each test's room goes when it ends: an earlier test's agents, whose sessions speak with the
    same keys and voices, must not still be connected when a later test refuses or drops them."""
    yield
    async with lk_api(local_stack.livekit_url) as lk:
        try:
            await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
        except api.TwirpError as exc:
            if exc.status != 404:
                raise


async def call(local_stack, room_name: str) -> Listener:
    """A room that asks Switchboard for both agents, and a listener in it."""
    metadata = {"agents": [{"name": "dispatcher"}, {"name": "driver"}]}
    await create_room(room_name, json.dumps(metadata), url=local_stack.livekit_url)
    listener = Listener()
    await listener.join(local_stack.livekit_url.replace("http", "ws"), room_name, DEV_API_KEY, DEV_API_SECRET)
    return listener


def agent(listener: Listener, identity: str) -> rtc.RemoteParticipant | None:
    participant = listener.room.remote_participants.get(identity)
    return participant if participant and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT else None


async def test_each_persona_reaches_session_update_and_the_models_audio_is_the_agents_track(
        local_stack, aws, realtime_workers, fake_realtime, room_name):
    before = len(fake_realtime.connections)
    listener = await call(local_stack, room_name)
    try:
        for role in ROLES:
            persona = Persona.from_role(get_role(role))
            connection = await eventually(lambda p=persona: next(
                (c for c in fake_realtime.of_voice(p.voice) if c.number > before
                 and c.session.get("instructions")), None), timeout=DEADLINE)
            session = connection.session
            assert connection.api_key == api_key(role)
            assert connection.path == "/v1/realtime" and connection.query["model"] == MODEL
            assert session["model"] == MODEL
            assert session["audio"]["output"]["voice"] == persona.voice  # Tim: alloy, Chris: echo
            assert session["instructions"] == instructions_for(persona)
            # The realtime API has no temperature, so the persona's (Tim 0.8, Chris 0.7) never
            # reaches the model in this mode.
            assert "temperature" not in json.dumps(connection.of_type("session.update"))

        # Tim speaks first: the server's tone comes out of the room as the dispatcher's track.
        tim = Persona.from_role(get_role("dispatcher"))
        await eventually(lambda: any(c.of_type("response.create") for c in fake_realtime.of_voice(tim.voice)
                                     if c.number > before), timeout=DEADLINE)
        await eventually(lambda: listener.audible("dispatcher"), timeout=DEADLINE)
        dispatcher = agent(listener, "dispatcher")
        assert dispatcher is not None and dispatcher.name == tim.name
        (publication,) = [p for p in dispatcher.track_publications.values() if p.kind == rtc.TrackKind.KIND_AUDIO]
        assert publication.source == rtc.TrackSource.SOURCE_MICROPHONE

        # The model's connection drops mid-call: the plugin logs it and reconnects with the same session.
        opened = len(fake_realtime.of_voice(tim.voice))
        assert await fake_realtime.drop(tim.voice) >= 1
        again = await eventually(lambda: next((c for c in fake_realtime.of_voice(tim.voice)[opened:]
                                               if c.session.get("instructions")), None), timeout=DEADLINE)
        assert again.session["audio"]["output"]["voice"] == tim.voice
        assert again.session["instructions"] == instructions_for(tim)
        log = realtime_workers["dispatcher"].log_tail(400)
        assert "connection failed, retrying" in log, log
        assert agent(listener, "dispatcher") is not None  # still in the call
    finally:
        await listener.aclose()


async def test_a_model_that_stays_unreachable_ends_the_job_and_the_agent_leaves(
        local_stack, aws, realtime_workers, fake_realtime, room_name):
    before = len(fake_realtime.connections)
    listener = await call(local_stack, room_name)
    try:
        tim = Persona.from_role(get_role("dispatcher"))
        await eventually(lambda: agent(listener, "dispatcher") and agent(listener, "driver"), timeout=DEADLINE)
        # This room's own session, set up (a connection of an earlier test's room, with the same
        # voice, must not stand for it: refused while this one's handshake was in flight, this one
        # would connect and stay).
        await eventually(lambda: any(c.number > before and c.session.get("instructions") and not c.closed
                                     for c in fake_realtime.of_voice(tim.voice)), timeout=DEADLINE)
        opened = len(fake_realtime.of_voice(tim.voice))
        fake_realtime.refuse(api_key("dispatcher"))
        await fake_realtime.drop(tim.voice)
        # livekit-agents retries 3 times, then the job ends and the agent leaves the room.
        await eventually(lambda: agent(listener, "dispatcher") is None, timeout=DEADLINE)
        assert fake_realtime.refused[api_key("dispatcher")] >= 1
        assert len(fake_realtime.of_voice(tim.voice)) == opened  # refused from the drop on: no new session
        log = realtime_workers["dispatcher"].log_tail(400)
        assert "realtime model connection lost for good; ending the job" in log, log
        assert agent(listener, "driver") is not None  # the other agent is not affected
        async with lk_api(local_stack.livekit_url) as lk:
            participants = await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))
        assert "dispatcher" not in {p.identity for p in participants.participants}
    finally:
        await listener.aclose()

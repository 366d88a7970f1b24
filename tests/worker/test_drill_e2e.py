"""End to end on the real stack: Switchboard dispatches the two role workers, they hold the drill.

Real livekit-server, DynamoDB Local and handler (the session's local_stack),
two `python -m worker <role> start` processes in local mode (espeak-ng and
Silero, offline), and a listener joined with the rtc SDK that measures the
audio it receives. Nothing is simulated; waits are bounded, never timed.
"""

from __future__ import annotations

import json
import signal
import socket
import urllib.request

import pytest
from livekit import api, rtc

from infra.room import create_room
from infra.stack import DEV_API_KEY, DEV_API_SECRET
from infra.workers import ROLES, wait_registered, worker_commands
from tests.livekit_helpers import eventually, lk_api, log_json
from worker.listen import Listener
from worker.presence import HEARD_ATTRIBUTE, SAID_ATTRIBUTE, STATE_ATTRIBUTE

pytestmark = pytest.mark.anyio

DISPATCHER_LINES = ["Driver, dispatch. Radio check. Over.", "Copy. Stand by at gate four. Over."]
DRIVER_LINES = ["Dispatch, driver. Loud and clear. Over."]
# Generous: two workers, livekit-server and DynamoDB Local share two cores.
DEADLINE = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status, response.read().decode()


@pytest.fixture
def workers(local_stack):
    health = {role: free_port() for role in ROLES}
    services = {}
    try:
        for command, role in zip(worker_commands(local_stack.livekit_url, command="start", health_ports=health,
                                                 env={"SWITCHBOARD_WORKER_AUDIO_MODE": "local",
                                                      "SWITCHBOARD_WORKER_DRAIN_TIMEOUT_SECONDS": "60"}), ROLES):
            services[role] = local_stack.stack.start_process(f"{command.name}-e2e", command.argv, command.env)
        wait_registered(list(services.values()), timeout=DEADLINE)
        yield services, health
    finally:
        for service in services.values():
            service.stop()
            print(f"--- {service.name} (shown when the test fails)\n{service.log_tail(40)}")


def agents_in(room: rtc.Room) -> dict[str, rtc.RemoteParticipant]:
    return {p.identity: p for p in room.remote_participants.values()
            if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT}


def attribute(room: rtc.Room, identity: str, key: str, default: str = "") -> str:
    participant = room.remote_participants.get(identity)
    return participant.attributes.get(key, default) if participant else default


async def test_dispatcher_and_driver_hold_a_radio_drill(local_stack, aws, workers, room_name):
    services, health = workers
    for role, port in health.items():
        assert http_get(f"http://127.0.0.1:{port}/") == (200, "OK")
        assert json.loads(http_get(f"http://127.0.0.1:{port}/worker")[1])["agent_name"] == role

    script = {"dispatcher": DISPATCHER_LINES, "driver": DRIVER_LINES}
    metadata = {"agents": [{"name": "dispatcher", "metadata": {"persona": "Tim", "script": script}},
                           {"name": "driver", "metadata": {"persona": "Chris", "script": DRIVER_LINES}}]}
    await create_room(room_name, json.dumps(metadata), url=local_stack.livekit_url)
    listener = Listener()
    await listener.join(local_stack.livekit_url.replace("http", "ws"), room_name, DEV_API_KEY, DEV_API_SECRET)
    room = listener.room
    try:
        # Both agents join under identities a frontend can find, as their personas.
        def both_agents() -> dict[str, rtc.RemoteParticipant] | None:
            found = agents_in(room)
            return found if {"dispatcher", "driver"} <= found.keys() else None

        agents = await eventually(both_agents, timeout=DEADLINE)
        assert (agents["dispatcher"].name, agents["driver"].name) == ("Tim", "Chris")
        assert agents["dispatcher"].attributes["role"] == "dispatcher"
        assert agents["driver"].attributes["role"] == "driver"

        # The initiator publishes a microphone; the driver hears it end (VAD) and answers;
        # the dispatcher hears the answer.
        await eventually(lambda: any(p.source == rtc.TrackSource.SOURCE_MICROPHONE
                                     for p in agents["dispatcher"].track_publications.values()), timeout=DEADLINE)
        await eventually(lambda: int(attribute(room, "driver", HEARD_ATTRIBUTE, "0")) >= 1
                         and int(attribute(room, "driver", SAID_ATTRIBUTE, "0")) >= 1, timeout=DEADLINE)
        await eventually(lambda: int(attribute(room, "dispatcher", HEARD_ATTRIBUTE, "0")) >= 1, timeout=DEADLINE)

        # A plain participant hears both, dispatcher first.
        await eventually(lambda: listener.audible("dispatcher") and listener.audible("driver"), timeout=DEADLINE)
        first = {}
        for utterance in listener.utterances:
            first.setdefault(utterance.identity, utterance.start)
        assert first["dispatcher"] < first["driver"], listener.utterances

        # The drill runs to its end, and every line was captioned.
        await eventually(lambda: attribute(room, "dispatcher", STATE_ATTRIBUTE) == "done"
                         and attribute(room, "driver", STATE_ATTRIBUTE) == "done", timeout=DEADLINE)
        await eventually(lambda: len(listener.captions) >= 3, timeout=DEADLINE)
        assert [(c.identity, c.text) for c in listener.captions] == [
            ("dispatcher", DISPATCHER_LINES[0]), ("driver", DRIVER_LINES[0]), ("dispatcher", DISPATCHER_LINES[1])]

        # Switchboard's log confirms both joins with those identities.
        def joined() -> dict[str, str] | None:
            found = {r["agent_name"]: r["agent_identity"] for r in log_json(aws, "--room", room_name)
                     if r["status"] == "JOINED"}
            return found if len(found) == 2 else None

        assert await eventually(joined, timeout=DEADLINE) == {"dispatcher": "dispatcher", "driver": "driver"}
        # Each agent carries the id of the dispatch that brought it, which is how the log matched it.
        records = {r["agent_name"]: r for r in log_json(aws, "--room", room_name)}
        for role in ("dispatcher", "driver"):
            assert agents[role].attributes["switchboard.dispatch_id"] == records[role]["dispatch_id"]

        # A second driver in the same room gets a suffix, not the first one's identity.
        async with lk_api(local_stack.livekit_url) as lk:
            await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
                agent_name="driver", room=room_name, metadata=json.dumps({"persona": "Chris"})))
        second = await eventually(lambda: agents_in(room).get("driver-2"), timeout=DEADLINE)
        assert second.name == "Chris" and second.attributes["role"] == "driver"
        assert "driver" in agents_in(room)

        # SIGTERM drains: the driver worker stops taking jobs but keeps its agents in the
        # room until the room ends, then exits cleanly.
        driver_worker = services["driver"]
        driver_worker.process.send_signal(signal.SIGTERM)
        await eventually(lambda: '"draining"' in driver_worker.log_path.read_text(), timeout=DEADLINE)
        draining = [json.loads(line) for line in driver_worker.log_path.read_text().splitlines()
                    if line.startswith("{") and '"draining"' in line]
        assert draining[-1]["active_jobs"] == 2
        async with lk_api(local_stack.livekit_url) as lk:
            present = {p.identity for p in (await lk.room.list_participants(
                api.ListParticipantsRequest(room=room_name))).participants}
            assert {"driver", "driver-2"} <= present and driver_worker.alive()
            await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
        await eventually(lambda: not driver_worker.alive(), timeout=DEADLINE)
        assert driver_worker.process.returncode == 0
        assert '"drained"' in driver_worker.log_path.read_text()
    finally:
        await listener.aclose()
        async with lk_api(local_stack.livekit_url) as lk:
            try:
                await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
            except api.TwirpError:
                pass  # already deleted by the drain check

"""worker/health.py: 200 only while the worker is registered with LiveKit.

A real `python -m worker driver start` registers with the test stack's livekit-server
through toxiproxy, which then takes LiveKit away and gives it back; another worker points
at a port nobody serves. livekit-agents' own health server would answer 200 throughout.
"""

from __future__ import annotations

import inspect
import sys
import time
import urllib.request

import pytest
from livekit.agents import AgentServer

from infra.stack import CACHE, Stack
from infra.workers import wait_registered, worker_commands
from tests.conftest import TEST_PORTS, WORKER_HEALTH_PORTS, _OFFSET
from tests.livekit_helpers import eventually, worker_health
from tests.toxiproxy import Toxiproxy
from worker.health import HealthServer, WorkerHealth

pytestmark = pytest.mark.anyio

_, _, TOXIPROXY_API, LIVEKIT_PROXY, NOBODY_PORT = WORKER_HEALTH_PORTS
DEADLINE = 60
# A dropped connection shows on the next probe; this only bounds a loaded machine.
LOST_WITHIN = 10


health = worker_health  # tests/livekit_helpers.py


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_livekit_agents_state_it_reads_is_still_there():
    """Private state of livekit-agents 1.8.9: an upgrade that renames it must fail here, not lie."""
    server = AgentServer(ws_url="ws://127.0.0.1:1", api_key="k", api_secret="s")
    assert (server._connecting, server._connection_failed) == (False, False)
    source = inspect.getsource(AgentServer._connection_task)
    assert "self._connecting = True" in source and "self._connecting = False" in source
    assert "self._connection_failed = True" in source


def test_the_states_in_order():
    server = AgentServer(ws_url="ws://127.0.0.1:1", api_key="k", api_secret="s")
    health_server = HealthServer(server, "127.0.0.1", 0)
    assert health_server.state() is WorkerHealth.STARTING
    server._connecting = True  # the first attempt
    assert health_server.state() is WorkerHealth.STARTING
    server.emit("worker_registered", "AW_x", None)
    server._connecting = False
    assert health_server.state() is WorkerHealth.REGISTERED
    server._connecting = True  # the connection dropped
    assert health_server.state() is WorkerHealth.RECONNECTING
    server._connection_failed = True
    assert health_server.state() is WorkerHealth.FAILED
    assert [s.healthy for s in WorkerHealth] == [False, True, False, False]


@pytest.fixture(scope="module")
def livekit_proxy(local_stack):
    with Stack(TEST_PORTS, run_dir=CACHE / "run" / f"test-{_OFFSET}-health") as stack:
        stack.start_toxiproxy(TOXIPROXY_API)
        yield stack, Toxiproxy(TOXIPROXY_API).proxy("livekit-worker", LIVEKIT_PROXY, local_stack.ports.livekit)


def start_worker(stack: Stack, livekit_url: str, port: int, name: str):
    (command,) = worker_commands(livekit_url, roles=["driver"], command="start",
                                 health_ports={"driver": port}, env={"SWITCHBOARD_WORKER_AUDIO_MODE": "local"})
    return stack.start_process(name, command.argv, command.env)


async def test_health_follows_the_livekit_connection(livekit_proxy):
    stack, proxy = livekit_proxy
    port = free_port()
    worker = start_worker(stack, f"http://127.0.0.1:{LIVEKIT_PROXY}", port, "worker-health")
    try:
        wait_registered([worker], timeout=DEADLINE)
        assert health(port) == (200, "OK")
        # LiveKit taken away: the connection drops, health says so at once.
        proxy.enabled(False)
        lost = time.monotonic()
        assert await eventually(lambda: health(port)[0] == 503, timeout=LOST_WITHIN, interval=0.05)
        print(f"health 503 {time.monotonic() - lost:.2f} s after LiveKit was taken away")
        assert health(port) == (503, "reconnecting")
        # Back: the worker registers again (livekit-agents retries every 2-10 s) and is healthy.
        proxy.enabled(True)
        assert await eventually(lambda: health(port) == (200, "OK"), timeout=DEADLINE)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/worker", timeout=3) as response:
            assert b'"agent_name": "driver"' in response.read()
    finally:
        worker.stop()
        print(f"--- {worker.name}\n{worker.log_tail(40)}", file=sys.stderr)


async def test_health_is_503_while_livekit_was_never_reached(livekit_proxy):
    stack, _ = livekit_proxy
    port = free_port()
    worker = start_worker(stack, f"http://127.0.0.1:{NOBODY_PORT}", port, "worker-health-unreachable")
    try:
        first = await eventually(lambda: _answer(port), timeout=DEADLINE)
        assert first == (503, "starting")
        # And it stays so across livekit-agents' retries (its own server would say 200 for ~160 s).
        await eventually(lambda: worker.log_tail(200).count("failed to connect to livekit") >= 2, timeout=DEADLINE)
        assert health(port) == (503, "starting")
    finally:
        worker.stop()


def _answer(port: int) -> tuple[int, str] | None:
    try:
        return health(port)
    except OSError:
        return None  # not listening yet

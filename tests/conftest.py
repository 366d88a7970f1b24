"""Shared fixtures: the real local stack, started once per test session.

livekit-server, DynamoDB Local and the handler run as real processes on test
ports (so `make dev` can run alongside), started through infra/stack.py: the
same code `make dev` uses.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from infra.stack import CACHE, DEV_API_KEY, DEV_API_SECRET, Ports, Stack, aws_env, handler_env, wait_until

# Shift every port to run two test sessions side by side on one machine.
_OFFSET = int(os.environ.get("SWITCHBOARD_TEST_PORT_OFFSET", "0"))
TEST_PORTS = Ports(livekit=17880 + _OFFSET, livekit_rtc_tcp=17881 + _OFFSET,
                   livekit_udp=17882 + _OFFSET,
                   dynamodb=18000 + _OFFSET, handler=18080 + _OFFSET)
SECOND_HANDLER_PORT = 18081 + _OFFSET
SPARE_HANDLER_PORTS = (18082 + _OFFSET, 18083 + _OFFSET)
HOSTILE_HANDLER_PORT = 18084 + _OFFSET
# The handler whose webhook budget tests/test_schedules.py runs out.
BUDGET_HANDLER_PORT = 18094 + _OFFSET
# The dispatch-log page (`switchboard ui`) under test in the browser.
REVIEW_UI_PORT = 18100 + _OFFSET
# The worker image's and the worker health tests' ports (health servers, toxiproxy, a port nobody serves).
WORKER_HEALTH_PORTS = tuple(18085 + _OFFSET + i for i in range(5))
# toxiproxy's API, its two proxies, and the handler that talks through them.
FAULT_PORTS = tuple(18090 + _OFFSET + i for i in range(4))
# tests/test_projects.py: two more livekit-servers (projects alpha and beta: tcp, rtc tcp, udp each)
# and the handlers of several projects that both send their webhooks to.
PROJECT_LIVEKIT_PORTS = {"alpha": (17890 + _OFFSET, 17891 + _OFFSET, 17892 + _OFFSET),
                         "beta": (17893 + _OFFSET, 17894 + _OFFSET, 17895 + _OFFSET)}
PROJECTS_HANDLER_PORTS = (18110 + _OFFSET, 18111 + _OFFSET)
# A second signing key the handler accepts beside LiveKit's devkey (rotation, or a second project).
SECOND_KEY, SECOND_SECRET = "rotatedkey", "a-second-secret-that-is-long-enough-for-hs256"
# Run as a module from the repository root: it shares worker.joining with the real workers.
TEST_AGENT = ["-m", "tests.agents.silent_agent"]


@dataclass
class LocalStack:
    stack: Stack
    ports: Ports
    env: dict[str, str]

    @property
    def livekit_url(self) -> str:
        return self.ports.livekit_url

    @property
    def webhook_url(self) -> str:
        return f"{self.ports.handler_url}/webhook"

    def start_handler(self, port: int, name: str, **overrides: str):
        return self.stack.start_handler(self.env | overrides, port=port, name=name)

    def start_test_agent(self, agent_name: str, name: str | None = None, *, tag_dispatch: bool = False,
                         max_joining: int = 0, join_delay: float = 0):
        """A livekit-agents worker registered as `agent_name` that joins and stays silent.

        `max_joining` > 0: at most that many of its agents join their rooms at once; the rest queue.
        `join_delay`: seconds each accepted job waits before it joins.
        """
        env = {"LIVEKIT_URL": self.livekit_url.replace("http", "ws"), "LIVEKIT_API_KEY": DEV_API_KEY,
               "LIVEKIT_API_SECRET": DEV_API_SECRET, "TEST_AGENT_NAME": agent_name,
               "TEST_AGENT_TAG_DISPATCH": "1" if tag_dispatch else "0",
               "TEST_AGENT_MAX_JOINING": str(max_joining), "TEST_AGENT_JOIN_DELAY": str(join_delay)}
        service = self.stack.start_process(name or f"agent-{agent_name}", [sys.executable, *TEST_AGENT], env)
        # A dispatch made before the worker registers is silently lost: wait for it.
        wait_until(lambda: "registered worker" in service.log_tail(200), service, timeout=60)
        return service


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    env = handler_env(TEST_PORTS, SWITCHBOARD_WEBHOOK_KEYS=f"{SECOND_KEY}:{SECOND_SECRET}",
                      SWITCHBOARD_CLAIM_LEASE_SECONDS="10")
    with Stack(TEST_PORTS, run_dir=CACHE / "run" / f"test-{_OFFSET}") as stack:
        stack.start_dynamodb()
        stack.create_table(env)
        stack.start_handler(env)
        stack.start_livekit()
        yield LocalStack(stack, TEST_PORTS, env)


@dataclass
class Faults:
    """toxiproxy in front of livekit-server and DynamoDB Local: real latency, resets and outages."""

    toxiproxy: Any
    livekit: Any
    dynamodb: Any

    @property
    def livekit_url(self) -> str:
        return f"http://127.0.0.1:{FAULT_PORTS[1]}"

    @property
    def dynamodb_url(self) -> str:
        return f"http://127.0.0.1:{FAULT_PORTS[2]}"


@pytest.fixture(scope="session")
def faults(local_stack: LocalStack) -> Iterator[Faults]:
    """One toxiproxy for the session (its API on FAULT_PORTS[0]); every test starts with no toxics."""
    from tests.toxiproxy import Toxiproxy

    local_stack.stack.start_toxiproxy(FAULT_PORTS[0])
    toxiproxy = Toxiproxy(FAULT_PORTS[0])
    yield Faults(toxiproxy, toxiproxy.proxy("livekit", FAULT_PORTS[1], local_stack.ports.livekit),
                 toxiproxy.proxy("dynamodb", FAULT_PORTS[2], local_stack.ports.dynamodb))
    toxiproxy.reset()


@pytest.fixture(scope="session")
def aws(local_stack: LocalStack) -> Iterator[dict[str, str]]:
    """Point this process's AWS clients (the CLI, DynamoStore) at DynamoDB Local."""
    env = aws_env(local_stack.ports)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def room_name() -> str:
    return f"room-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def room(local_stack, room_name):
    """A real room on the local livekit-server, created without metadata, so only a test's own events act on it."""
    from livekit import api

    from tests.livekit_helpers import lk_api

    async with lk_api(local_stack.livekit_url) as lk:
        created = await lk.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=120))
        yield created
        with contextlib.suppress(Exception):
            await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))

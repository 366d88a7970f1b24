"""The role workers as processes of the local stack: for `make dev`, the demo and the tests.

    from infra.workers import start_workers
    start_workers(stack)        # in infra/dev.py's dev_stack, after start_livekit()

The local stack's side of them: their command lines, its keys, its light settings. A worker
knows nothing of this module; the container runs `python -m worker` itself.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .stack import DEV_API_KEY, DEV_API_SECRET, Service, Stack

ROLES = ("dispatcher", "driver")
# The line worker/lifecycle.py's serve() logs once LiveKit has accepted the worker (read from
# the log, so that this process never imports livekit-agents).
REGISTERED = "worker registered"

# Two workers, a livekit-server and DynamoDB Local on a small machine: jobs in
# threads of one process each instead of a process per job, so 20 jobs a worker
# (its capacity here) fit in memory.
LIGHT_ENV = {
    "SWITCHBOARD_WORKER_JOB_EXECUTOR": "thread",
    "SWITCHBOARD_WORKER_MAX_JOBS": "20",
}


WORKER_PREFIX = "worker-"


def is_worker(service: Service) -> bool:
    return service.name.startswith(WORKER_PREFIX)


@dataclass(frozen=True)
class WorkerCommand:
    name: str
    argv: list[str]
    env: dict[str, str]


def worker_commands(livekit_url: str, *, roles: Sequence[str] = ROLES, command: str = "dev",
                    health_ports: Mapping[str, int] | None = None,
                    env: Mapping[str, str] | None = None) -> list[WorkerCommand]:
    """How to start one worker per role against the local livekit-server at `livekit_url`."""
    ws_url = livekit_url.replace("http://", "ws://").replace("https://", "wss://")
    commands = []
    for role in roles:
        role_env = {
            "LIVEKIT_URL": ws_url,
            "LIVEKIT_API_KEY": DEV_API_KEY,
            "LIVEKIT_API_SECRET": DEV_API_SECRET,
            # 0: any free port, so local workers never fight over 8081.
            "SWITCHBOARD_WORKER_HEALTH_PORT": str((health_ports or {}).get(role, 0)),
            **LIGHT_ENV,
            **(env or {}),
        }
        argv = [sys.executable, "-m", "worker", role, command]
        commands.append(WorkerCommand(f"{WORKER_PREFIX}{role}", argv, role_env))
    return commands


def registered(service: Service) -> bool:
    try:
        return REGISTERED in service.log_path.read_text(errors="replace")
    except FileNotFoundError:
        return False


def wait_registered(services: Sequence[Service], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    for service in services:
        while not registered(service):
            if not service.alive():
                raise RuntimeError(f"{service.name} exited before registering:\n{service.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} did not register within {timeout:g} s:\n{service.log_tail()}")
            time.sleep(0.2)


def start_workers(stack: Stack, *, roles: Sequence[str] = ROLES, command: str = "dev",
                  env: Mapping[str, str] | None = None, wait: bool = True,
                  timeout: float = 90) -> list[Service]:
    """Start one worker per role as stack processes (stopped with the stack); wait until registered."""
    services = [stack.start_process(c.name, c.argv, c.env)
                for c in worker_commands(stack.ports.livekit_url, roles=roles, command=command, env=env)]
    if wait:
        wait_registered(services, timeout)
    return services

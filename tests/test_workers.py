"""infra/workers.py's command lines, in-process: what the local stack runs for each role."""

from __future__ import annotations

import sys

from infra.stack import DEV_API_KEY, DEV_API_SECRET
from infra.workers import LIGHT_ENV, ROLES, worker_commands


def test_one_worker_per_role_on_the_local_livekit_with_its_keys_and_light_settings():
    commands = worker_commands("http://127.0.0.1:7880", health_ports={"driver": 9001}, env={"X": "1"})
    assert [c.name for c in commands] == [f"worker-{r}" for r in ROLES]
    for command, role in zip(commands, ROLES, strict=True):
        assert command.argv == [sys.executable, "-m", "worker", role, "dev"]
        assert command.env["LIVEKIT_URL"] == "ws://127.0.0.1:7880"
        assert (command.env["LIVEKIT_API_KEY"], command.env["LIVEKIT_API_SECRET"]) == (DEV_API_KEY, DEV_API_SECRET)
        assert LIGHT_ENV.items() <= command.env.items() and command.env["X"] == "1"
    # 0: any free port, so workers never fight over 8081; a port asked for is that port.
    assert [c.env["SWITCHBOARD_WORKER_HEALTH_PORT"] for c in commands] == ["0", "9001"]


def test_https_becomes_wss_and_a_role_and_command_can_be_chosen():
    [command] = worker_commands("https://lk.example", roles=["driver"], command="start")
    assert command.env["LIVEKIT_URL"] == "wss://lk.example"
    assert command.argv[-2:] == ["driver", "start"]

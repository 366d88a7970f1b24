"""The worker image, built (`make image`) and run the way template.yaml's ECS task definition runs it.

Built by infra/image.sh with Debian's podman, from stand-in base images where the public
ones cannot be pulled (see there). Each container gets the task definition's entry point,
command, environment and secrets (LiveKitUrl → the test stack's livekit-server, the secret
→ its dev keys), its stop timeout and its init process; host networking, with the health
port moved into this run's port range (tests/podman.py says why).

This module builds the image first, as `make image` does (cached layers make that about
20 s once built; `make image-test` builds it before and sets SWITCHBOARD_WORKER_IMAGE_BUILT=1).
Where this machine cannot build or run it, the tests fail with the build's or podman's own
error: they are never skipped.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from livekit import api

from handler.wire import DISPATCH_ID_ATTRIBUTE
from infra.room import create_room
from infra.stack import DEV_API_KEY, DEV_API_SECRET
from tests.conftest import WORKER_HEALTH_PORTS, _OFFSET
from tests.livekit_helpers import eventually, lk_api, named_dispatches, worker_health
from tests.podman import (
    Container,
    build_image,
    image_healthcheck,
    image_name,
    json_lines,
    run_task,
    task_run,
    worker_container,
)
from tests.test_template import load_template
from worker.identity import ROLE_ATTRIBUTE
from worker.roster import get_role

# Run alone on a fresh machine, the first test builds the image (minutes): past the suite's 300 s.
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(1800)]

HEALTH_PORT, UNREACHABLE_HEALTH_PORT, _, _, NOBODY_PORT = WORKER_HEALTH_PORTS
DEADLINE = 90
NS = 1_000_000_000


http_status = worker_health  # tests/livekit_helpers.py


@pytest.fixture(scope="module")
def image() -> str:
    if os.environ.get("SWITCHBOARD_WORKER_IMAGE_BUILT") == "1":
        return image_name()
    return build_image()


@pytest.fixture(scope="module")
def template():
    return load_template()


def start(name: str, image: str, template, role: str, livekit_url: str, health_port: int) -> Container:
    task = task_run(worker_container(template, role), refs={"LiveKitUrl": livekit_url},
                    secrets={"LIVEKIT_API_KEY": DEV_API_KEY, "LIVEKIT_API_SECRET": DEV_API_SECRET})
    return run_task(f"switchboard-image-test-{_OFFSET}-{name}", image, task,
                    extra_env={"SWITCHBOARD_WORKER_HEALTH_PORT": str(health_port)})


@pytest.fixture(scope="module", autouse=True)
def unreachable(image, template):
    """Started before the module's first test, so its 90 s bound runs while the others do."""
    container = start("unreachable", image, template, "driver", f"ws://127.0.0.1:{NOBODY_PORT}",
                      UNREACHABLE_HEALTH_PORT)
    yield container, time.monotonic()
    print(f"--- {container.name} (shown when a test fails)\n{container.logs()[-3000:]}")
    container.remove()


@pytest.fixture(scope="module")
def dispatcher(local_stack, image, template, unreachable):
    container = start("dispatcher", image, template, "dispatcher", local_stack.livekit_url.replace("http", "ws"),
                      HEALTH_PORT)
    yield container
    print(f"--- {container.name} (shown when a test fails)\n{container.logs()[-3000:]}")
    container.remove()


def test_the_image_healthcheck_is_the_task_definitions(image, template):
    check = image_healthcheck(image)
    for role in ("dispatcher", "driver"):
        ecs = worker_container(template, role)["HealthCheck"]
        assert check["Test"] == ecs["Command"]
        assert (check["Interval"], check["Timeout"], check["Retries"], check["StartPeriod"]) == (
            ecs["Interval"] * NS, ecs["Timeout"] * NS, ecs["Retries"], ecs["StartPeriod"] * NS)


def test_the_image_holds_the_worker_runtime_only(image):
    from tests.podman import podman

    probe = ("import importlib.util as u, pathlib, sys\n"
             "mods = sorted(p.stem for p in pathlib.Path('/app/worker').glob('*.py'))\n"
             "print(' '.join(mods))\n"
             "print(' '.join(m for m in ('boto3', 'aioboto3', 'botocore', 'starlette', 'uvicorn', 'infra',"
             " 'pytest', 'hypothesis') if u.find_spec(m)))\n"
             "print(len(list(pathlib.Path('/app/worker/__pycache__').glob('*.pyc'))))\n"
             "print(' '.join(sorted(p.name for p in pathlib.Path('/app/handler').iterdir())))\n"
             "import worker.server, worker.health, worker.realtime\n")
    lines = podman("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", probe).stdout.splitlines()
    modules, extras, compiled, handler = lines[0].split(), lines[1].split(), int(lines[2]), lines[3].split()
    assert not {"demo", "local", "listen"} & set(modules), modules
    assert {"server", "health", "lifecycle", "realtime", "drill"} <= set(modules)
    assert extras == [], f"not the worker's: {extras}"
    assert compiled >= len(modules)
    # Of the handler, only the two modules both sides share (standard library at import time), compiled.
    assert handler == ["__init__.py", "__pycache__", "lazy_livekit.py", "wire.py"], handler
    assert podman("run", "--rm", "--network", "none", "--entrypoint", "espeak-ng", image, "--version").returncode == 0


async def test_the_container_registers_takes_a_dispatch_from_the_handler_and_drains_on_sigterm(
        local_stack, aws, dispatcher, template, room_name):
    role = get_role("dispatcher")
    # Registered with the test stack's livekit-server, and its HEALTHCHECK passes.
    await eventually(lambda: "worker registered" in dispatcher.logs(), timeout=DEADLINE)
    assert http_status(HEALTH_PORT) == (200, "OK")
    code, output = dispatcher.healthcheck()
    assert code == 0, output
    assert dispatcher.health_status() == "healthy"

    # A room whose metadata asks for the dispatcher: the handler dispatches, the container joins.
    await create_room(room_name, json.dumps({"agents": [{"name": role.name}]}), url=local_stack.livekit_url)
    async with lk_api(local_stack.livekit_url) as lk:
        async def joined():
            found = await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))
            return next((p for p in found.participants if p.identity == role.name), None)

        participant = await eventually(joined, timeout=DEADLINE)
        assert participant.name == role.persona  # Tim
        assert participant.kind == api.ParticipantInfo.AGENT
        assert participant.attributes[ROLE_ATTRIBUTE] == role.name
        (dispatch,) = await named_dispatches(lk, room_name)
        assert participant.attributes[DISPATCH_ID_ATTRIBUTE] == dispatch.id

        # SIGTERM (what ECS sends first): the worker drains, keeping its call while it runs...
        dispatcher.signal("TERM")
        await eventually(lambda: "draining" in dispatcher.logs(), timeout=DEADLINE)
        assert dispatcher.state()["Running"]
        assert await joined() is not None
        # ...and exits 0 once the call ends, long before the task definition's stop timeout.
        await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
    assert dispatcher.wait(timeout=110) == 0
    lines = json_lines(dispatcher.logs())
    assert {"drained", "worker closed"} <= {line.get("message") for line in lines}, lines[-10:]
    # The drain bound is the task definition's, and ends before its stop timeout's SIGKILL.
    task = task_run(worker_container(template, role.name), refs={"LiveKitUrl": ""}, secrets={
        "LIVEKIT_API_KEY": "", "LIVEKIT_API_SECRET": ""})
    (draining,) = [line for line in lines if line.get("message") == "draining"]
    assert draining["timeout_seconds"] == int(task.env["SWITCHBOARD_WORKER_DRAIN_TIMEOUT_SECONDS"]) < task.stop_timeout


async def test_with_livekit_unreachable_health_says_503_and_the_healthcheck_turns_unhealthy(unreachable, image):
    container, started = unreachable
    # 503 from the first answer: never registered.
    def answer() -> tuple[int, str] | None:
        assert container.state()["Running"], container.logs()[-2000:]
        try:
            return http_status(UNREACHABLE_HEALTH_PORT)
        except OSError:
            return None  # not listening yet

    status = await eventually(answer, timeout=DEADLINE)
    assert status == (503, "starting")
    check = image_healthcheck(image)
    bound = (check["StartPeriod"] + check["Retries"] * check["Interval"]) / NS  # 90 s, as documented

    # podman applies the image's start period and retries; the checks are run here at its interval.
    def unhealthy() -> bool:
        code, _ = container.healthcheck()
        assert code != 0 or not container.state()["Running"]
        return container.health_status() == "unhealthy"

    while True:
        ran = time.monotonic()
        if unhealthy():
            break
        assert time.monotonic() - started < bound + 60, f"still {container.health_status()!r} after {bound + 60:g} s"
        time.sleep(max(0.0, check["Interval"] / NS - (time.monotonic() - ran)))
    print(f"unhealthy {time.monotonic() - started:.0f} s after the container started (bound {bound:g} s)")
    assert http_status(UNREACHABLE_HEALTH_PORT) == (503, "starting")
    assert "worker registered" not in container.logs()

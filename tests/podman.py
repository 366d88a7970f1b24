"""The worker image under podman: build it (infra/image.sh), run it as an ECS task definition says.

podman runs with the project's containers.conf (infra/containers.conf) and host networking:
the container reaches the test stack's livekit-server on loopback, as the worker process in
the other tests does. On Fargate (awsvpc) each task has its own network namespace; here the
health port is the one thing that differs, moved into this test run's port range.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.stack import INFRA, ROOT

IMAGE_SCRIPT = INFRA / "image.sh"
CONTAINERS_CONF = INFRA / "containers.conf"


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=podman_env())
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def image_name() -> str:
    return subprocess.run([str(IMAGE_SCRIPT), "--print-image"], capture_output=True, text=True,
                          check=True).stdout.strip()


def build_image() -> str:
    """infra/image.sh, as `make image` runs it; its own error, verbatim, if it cannot build here."""
    done = subprocess.run([str(IMAGE_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise AssertionError(f"`make image` (infra/image.sh) failed, exit {done.returncode}:\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return image_name()


def image_healthcheck(image: str) -> dict[str, Any]:
    return json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image).stdout)


# --- template.yaml's worker task definitions --------------------------------------------------

def _substitute(value: Any, name: str, replacement: str) -> Any:
    """Fn::ForEach's loop variable replaced in a resource body (Ref and ${Name} in strings/Sub)."""
    if isinstance(value, dict):
        if value == {"Ref": name}:
            return replacement
        return {k.replace(f"${{{name}}}", replacement): _substitute(v, name, replacement) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, name, replacement) for v in value]
    if isinstance(value, str):
        return value.replace(f"${{{name}}}", replacement)
    return value


def expanded_resources(template: Mapping[str, Any]) -> dict[str, Any]:
    """Resources, with any Fn::ForEach loop unrolled (one level; a literal collection, or a Ref to a
    CommaDelimitedList parameter, taken at its default)."""
    out: dict[str, Any] = {}
    for key, value in template["Resources"].items():
        if key.startswith("Fn::ForEach::"):
            name, collection, body = value
            if isinstance(collection, dict) and "Ref" in collection:
                default = template["Parameters"][collection["Ref"]]["Default"]
                collection = default if isinstance(default, list) else [r.strip() for r in default.split(",")]
            for item in collection:
                for body_key, body_value in body.items():
                    out[_substitute(body_key, name, item)] = _substitute(body_value, name, item)
        else:
            out[key] = value
    return out


def worker_container(template: Mapping[str, Any], role: str) -> dict[str, Any]:
    """The container definition of the task definition that runs `role`."""
    for resource in expanded_resources(template).values():
        if resource.get("Type") != "AWS::ECS::TaskDefinition":
            continue
        for container in resource["Properties"]["ContainerDefinitions"]:
            command = container.get("Command") or []
            if command and command[0] == role:
                return container
    raise AssertionError(f"no task definition runs the {role!r} worker")


@dataclass(frozen=True)
class TaskRun:
    """What `podman run` needs to start a container the way the task definition does."""
    entry_point: list[str]
    command: list[str]
    env: dict[str, str]
    stop_timeout: int
    init: bool


def task_run(container: Mapping[str, Any], refs: Mapping[str, str], secrets: Mapping[str, str]) -> TaskRun:
    env: dict[str, str] = {}
    for variable in container.get("Environment", []):
        value = variable["Value"]
        if isinstance(value, dict):
            (ref,) = value.values()
            value = refs[ref]
        env[variable["Name"]] = str(value)
    for secret in container.get("Secrets", []):
        env[secret["Name"]] = secrets[secret["Name"]]
    return TaskRun(entry_point=list(container["EntryPoint"]), command=list(container["Command"]), env=env,
                   stop_timeout=int(container.get("StopTimeout", 30)),
                   init=bool((container.get("LinuxParameters") or {}).get("InitProcessEnabled")))


# --- containers --------------------------------------------------------------------------------

@dataclass
class Container:
    name: str

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def state(self) -> dict[str, Any]:
        return json.loads(podman("inspect", "--format", "{{json .State}}", self.name).stdout)

    def healthcheck(self) -> tuple[int, str]:
        """Run the image's HEALTHCHECK now (no systemd here to run it on its timer): exit code, status."""
        done = podman("healthcheck", "run", self.name, check=False)
        return done.returncode, (done.stdout + done.stderr).strip()

    def health_status(self) -> str:
        state = self.state()
        health = state.get("Health") or state.get("Healthcheck") or {}
        return health.get("Status", "")

    def signal(self, name: str) -> None:
        podman("kill", "--signal", name, self.name)

    def wait(self, timeout: float) -> int:
        return int(podman("wait", self.name, timeout=timeout).stdout.strip().splitlines()[-1])

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)


def run_task(name: str, image: str, task: TaskRun, extra_env: Mapping[str, str] = {}) -> Container:
    podman("rm", "-f", "-t", "0", name, check=False)  # a leftover of a killed run
    env_args: list[str] = []
    for key, value in {**task.env, **extra_env}.items():
        env_args += ["--env", f"{key}={value}"]
    args: Sequence[str] = [
        "run", "--detach", "--name", name, "--network", "host",
        # No systemd on this machine to run the HEALTHCHECK on its timer: the test runs it.
        "--health-interval", "disable",
        "--stop-timeout", str(task.stop_timeout),
        *(["--init"] if task.init else []),
        "--entrypoint", json.dumps(task.entry_point),
        *env_args, image, *task.command]
    podman(*args)
    return Container(name)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if re.match(r"^\s*\{", line):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines

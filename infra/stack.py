"""Start and stop the local stack's processes: the real livekit-server, DynamoDB Local, the handler.

`make dev` (infra/dev.py) starts them all through `Stack`, the workers with them
(infra/workers.py); tests start the same servers on their own ports, so a test
run and `make dev` can run side by side.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
CACHE = INFRA / ".cache"
LIVEKIT_BIN = CACHE / "bin" / "livekit-server"
TOXIPROXY_BIN = CACHE / "bin" / "toxiproxy-server"
DYNAMODB_DIR = CACHE / "dynamodb"

DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"
# livekit-server --dev's secret is 6 bytes: PyJWT warns on every token signed with it,
# in every dev command (infra.room, the demo). The CLI does the same for this pair.
warnings.filterwarnings("ignore", message=r"The HMAC key is \d+ bytes long")


@dataclass(frozen=True)
class Ports:
    livekit: int = 7880
    livekit_rtc_tcp: int = 7881
    # One UDP port carries every peer connection (ICE mux). A port range would give each
    # peer connection its own port, and a burst of agents exhausts it: their joins time out.
    livekit_udp: int = 7882
    dynamodb: int = 8000
    handler: int = 8080

    @property
    def livekit_url(self) -> str:
        return f"http://127.0.0.1:{self.livekit}"

    @property
    def dynamodb_url(self) -> str:
        return f"http://127.0.0.1:{self.dynamodb}"

    @property
    def handler_url(self) -> str:
        return f"http://127.0.0.1:{self.handler}"


@dataclass
class Service:
    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, cwd=self.cwd, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so stop() reaches its children too
            preexec_fn=_die_with_parent)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = 10) -> None:
        self.signal(signal.SIGTERM)
        self.wait_or_kill(time.monotonic() + timeout)

    def wait_or_kill(self, deadline: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _die_with_parent() -> None:
    # A killed test run or `make dev` must not leave servers holding its ports. SIGKILL, because
    # SIGTERM starts a graceful drain (livekit-server waits for its rooms, a worker for its jobs)
    # and nobody is left to cut it short.
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def udp_port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_until(check: Callable[[], object], service: Service, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited during start-up:\n{service.log_tail()}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{service.name} not ready after {timeout:g} s:\n{service.log_tail()}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        status: int = response.status
        return status == 200


def require_fetched() -> None:
    missing = [p for p in (LIVEKIT_BIN, TOXIPROXY_BIN, DYNAMODB_DIR / "lib") if not p.exists()]
    if missing:
        raise RuntimeError(f"missing {', '.join(map(str, missing))}: run infra/fetch.sh (make setup)")


def aws_env(ports: Ports) -> dict[str, str]:
    """What the handler and the CLI need to reach DynamoDB Local: only standard AWS variables."""
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": ports.dynamodb_url,
        "AWS_REGION": "us-east-1",
        # DynamoDB Local accepts any credentials, but botocore insists on some.
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }


def handler_env(ports: Ports, **overrides: str) -> dict[str, str]:
    env = aws_env(ports) | {
        "LIVEKIT_URL": ports.livekit_url,
        "LIVEKIT_API_KEY": DEV_API_KEY,
        "LIVEKIT_API_SECRET": DEV_API_SECRET,
        "SWITCHBOARD_TABLE_NAME": "switchboard-dispatch",
        "SWITCHBOARD_ALLOWED_AGENTS": "dispatcher,driver,translator,assistant",
        "SWITCHBOARD_ROUTING_FILE": str(INFRA / "routing.yaml"),
    }
    env.update(overrides)
    return env


class Stack:
    """The local stack's processes; a context manager that stops whatever it started."""

    def __init__(self, ports: Ports = Ports(), run_dir: Path = CACHE / "run" / "dev") -> None:
        self.ports = ports
        self.run_dir = run_dir
        self.services: list[Service] = []

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 10) -> None:
        # All at once: livekit-server alone can take seconds to drain on SIGTERM.
        for service in self.services:
            service.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in self.services:
            service.wait_or_kill(deadline)
        self.services.clear()

    def _start(self, service: Service) -> Service:
        # Another stack on the same ports would answer our readiness checks and
        # silently take our traffic: refuse to start on top of it.
        argv = " ".join(service.argv)
        for port, protocol in self._ports_of(argv):
            if port_open(port) if protocol == "tcp" else not udp_port_free(port):
                raise RuntimeError(f"{service.name}: {protocol.upper()} port {port} is already in use "
                                   "(another stack running?)")
        if service.log_path.exists():
            service.log_path.unlink()
        self.services.append(service.start())
        return service

    def _ports_of(self, argv: str) -> list[tuple[int, str]]:
        if "DynamoDBLocal" in argv or "ServerRunner" in argv:
            return [(self.ports.dynamodb, "tcp")]
        if "livekit-server" in argv:
            return [(self.ports.livekit, "tcp"), (self.ports.livekit_rtc_tcp, "tcp"), (self.ports.livekit_udp, "udp")]
        if "toxiproxy" in argv:
            return [(int(argv.rsplit("-port", 1)[1].split()[0]), "tcp")]
        if "handler.cli serve" in argv:
            return [(int(argv.rsplit("--port", 1)[1].split()[0]), "tcp")]
        return []

    def start_dynamodb(self) -> Service:
        require_fetched()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lib = DYNAMODB_DIR / "lib"
        service = self._start(Service("dynamodb-local", [
            "java", f"-Djava.library.path={lib}", "-cp", f"{lib}/*",
            "com.amazonaws.services.dynamodbv2.local.main.ServerRunner",
            "-inMemory", "-port", str(self.ports.dynamodb)], self.run_dir / "dynamodb.log",
            cwd=self.run_dir))  # it drops a metadata file in its working directory
        wait_until(lambda: port_open(self.ports.dynamodb), service)
        return service

    def livekit_config(self, webhook_urls: list[str], keys: Mapping[str, str] | None = None,
                       webhook_key: str | None = None) -> Path:
        config = yaml.safe_load((INFRA / "livekit.yaml").read_text())
        config["port"] = self.ports.livekit
        config["rtc"].update(tcp_port=self.ports.livekit_rtc_tcp, udp_port=self.ports.livekit_udp)
        config["webhook"]["urls"] = webhook_urls
        if keys:
            config["keys"] = dict(keys)
        if webhook_key:
            config["webhook"]["api_key"] = webhook_key  # the key LiveKit signs its webhooks with
        path = self.run_dir / "livekit.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        return path

    def start_livekit(self, webhook_urls: list[str] | None = None, keys: Mapping[str, str] | None = None,
                      webhook_key: str | None = None) -> Service:
        require_fetched()
        config = self.livekit_config(webhook_urls or [f"{self.ports.handler_url}/webhook"], keys, webhook_key)
        service = self._start(Service("livekit-server", [str(LIVEKIT_BIN), "--dev", "--config", str(config)],
                                      self.run_dir / "livekit.log"))
        wait_until(lambda: http_ok(self.ports.livekit_url), service)
        return service

    def create_table(self, env: Mapping[str, str]) -> None:
        # A session of its own, as every service's: a Ctrl-C during start-up is for dev(), which
        # stops what it started; the terminal's SIGINT would print this child's traceback too.
        subprocess.run([sys.executable, "-m", "handler.cli", "table", "create"], cwd=ROOT,
                       env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL, start_new_session=True)

    def start_handler(self, env: Mapping[str, str], port: int | None = None, name: str = "handler") -> Service:
        port = port or self.ports.handler
        service = self._start(Service(name, [
            sys.executable, "-m", "handler.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            self.run_dir / f"{name}.log", env=env))
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), service)
        return service

    def start_sweeper(self, env: Mapping[str, str], every: str = "5s", name: str = "sweeper") -> Service:
        """`switchboard sweep --every`: what EventBridge runs once a minute in production, more often."""
        return self._start(Service(name, [sys.executable, "-m", "handler.cli", "sweep", "--every", every],
                                   self.run_dir / f"{name}.log", env=env))

    def start_toxiproxy(self, port: int) -> Service:
        """Shopify's toxiproxy: real latency, resets and outages between the handler and a server."""
        require_fetched()
        service = self._start(Service("toxiproxy", [str(TOXIPROXY_BIN), "-host", "127.0.0.1", "-port", str(port)],
                                      self.run_dir / "toxiproxy.log"))
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/version"), service)
        return service

    def start_process(self, name: str, argv: list[str], env: Mapping[str, str]) -> Service:
        return self._start(Service(name, argv, self.run_dir / f"{name}.log", env=env))

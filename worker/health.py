"""The worker's health endpoint: 200 only while the worker is registered with LiveKit.

livekit-agents 1.8.9 has a health server of its own (AgentServer.run, `health_check`), but
it answers 503 only for a dead inference process or once the connection task has given up
(`_connection_failed`, after `max_retry` = 16 attempts): with LiveKit unreachable it says
200 for about 160 s of retries, and the process exits a moment after it turns 503. An
orchestrator keeps, and routes deploys through, a worker that cannot take a job.

This server answers on the configured health port instead, and livekit-agents' own moves to
an ephemeral loopback port, where this one still asks it (its inference-process check) and
relays its `/worker` document:

    GET /        200 "OK"            registered, and livekit-agents' own check passes
                 503 <the state>     starting, reconnecting, failed, or livekit-agents says 503
    GET /worker  livekit-agents' worker document (agent name, jobs, load), relayed

"Registered" is livekit-agents' own view: the `worker_registered` event, and its connection
task's `_connecting` flag, which it raises as soon as a connection drops (before the first
retry) and lowers when LiveKit answers the next registration. Neither that flag nor
`_connection_failed` is public API; tests/worker/test_worker_health.py fails if an upgrade
renames them. A dropped or refused connection therefore shows at once; a silent network
partition shows when aiohttp's websocket heartbeat gives up on it (livekit-agents pings
every 30 s, aiohttp waits 15 s for the pong): within 45 s.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

import aiohttp
from aiohttp import web
from livekit.agents import AgentServer

log = logging.getLogger("switchboard.worker")

# livekit-agents' own health server: loopback only, any free port.
AGENTS_HTTP_HOST = "127.0.0.1"
AGENTS_HTTP_PORT = 0
# How long this server waits on livekit-agents' own endpoints (same process, same loop).
AGENTS_HTTP_TIMEOUT_SECONDS = 2.0


class WorkerHealth(StrEnum):
    STARTING = "starting"  # not registered yet
    REGISTERED = "registered"
    RECONNECTING = "reconnecting"  # registered once, connection lost, retrying
    FAILED = "failed"  # livekit-agents gave up connecting; the process is about to exit

    @property
    def healthy(self) -> bool:
        return self is WorkerHealth.REGISTERED


class HealthServer:
    """Serves WorkerHealth for one AgentServer on host:port, from before it registers until it closes."""

    def __init__(self, server: AgentServer, host: str, port: int) -> None:
        self._server = server
        self._host = host
        self._port = port
        self._registered_once = False
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        server.on("worker_registered", self._on_registered)

    def _on_registered(self, *_: Any) -> None:
        self._registered_once = True

    @property
    def port(self) -> int:
        return self._port

    def state(self) -> WorkerHealth:
        if getattr(self._server, "_connection_failed", False):
            return WorkerHealth.FAILED
        if not self._registered_once:
            return WorkerHealth.STARTING
        if getattr(self._server, "_connecting", True):
            return WorkerHealth.RECONNECTING
        return WorkerHealth.REGISTERED

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/", self._health), web.get("/worker", self._worker)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host or None, self._port).start()
        if self._port == 0 and self._runner.addresses:
            self._port = self._runner.addresses[0][1]
        log.info("health server listening", extra={"host": self._host or "*", "port": self._port})

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _health(self, _: web.Request) -> web.Response:
        state = self.state()
        if not state.healthy:
            return web.Response(status=503, text=str(state))
        status, text = await self._ask_agents("/")
        if status != 200:
            return web.Response(status=503, text=f"livekit-agents: {text}")
        return web.Response(text="OK")

    async def _worker(self, _: web.Request) -> web.Response:
        status, text = await self._ask_agents("/worker")
        return web.Response(status=status, text=text, content_type="application/json" if status == 200 else None)

    async def _ask_agents(self, path: str) -> tuple[int, str]:
        port = self._server.worker_info.http_port
        if not port:
            return 503, "its HTTP server is not running"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=AGENTS_HTTP_TIMEOUT_SECONDS))
        try:
            async with self._session.get(f"http://{AGENTS_HTTP_HOST}:{port}{path}") as response:
                return response.status, await response.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return 503, f"its HTTP server did not answer ({type(exc).__name__})"


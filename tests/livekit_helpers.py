"""Small helpers for tests that talk to the real local livekit-server and read the real log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from livekit import api

from infra.stack import DEV_API_KEY, DEV_API_SECRET, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_active_jobs(port: int) -> int:
    """The jobs a worker runs now, from its health server's `/worker` (worker/health.py relays livekit-agents')."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/worker", timeout=5) as response:
        return int(json.loads(response.read()).get("active_jobs", 0))


def lk_api(url: str) -> api.LiveKitAPI:
    return api.LiveKitAPI(url, DEV_API_KEY, DEV_API_SECRET)


async def named_dispatches(lk: api.LiveKitAPI, room: str) -> list[Any]:
    """The room's dispatches, without the unnamed default one LiveKit creates with every room."""
    return [d for d in await lk.agent_dispatch.list_dispatch(room) if d.agent_name]


def switchboard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "handler.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def log_json(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    done = switchboard("logs", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def eventually(check: Callable[[], Any], timeout: float = 30, interval: float = 0.25) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g} s; last value: {last!r}")
        await asyncio.sleep(interval)


async def assert_nothing_dispatched(local_stack, aws, room) -> None:
    async with lk_api(local_stack.livekit_url) as lk:
        assert await named_dispatches(lk, room.name) == []
    assert log_json(aws, "--room", room.name) == []


def worker_health(port: int) -> tuple[int, str]:
    """A worker health endpoint's answer on loopback: (HTTP status, body), 503 included."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def agent_token(identity: str, room: str, attributes: dict[str, str] | None = None) -> str:
    """A token for an agent participant, as a worker's job gets one (kind AGENT)."""
    return (api.AccessToken(DEV_API_KEY, DEV_API_SECRET).with_identity(identity).with_kind("agent")
            .with_attributes(attributes or {})
            .with_grants(api.VideoGrants(room_join=True, room=room, agent=True, can_update_own_metadata=True)).to_jwt())


@contextlib.asynccontextmanager
async def never_active_agent(livekit_url: str, room: str, identity: str,
                             attributes: dict[str, str]) -> AsyncIterator[None]:
    """An agent session that joins by signal and never connects its media: what a failed
    media connection leaves (issue 12's soak). livekit-server lists it JOINED, never ACTIVE,
    and sends no participant_joined; unanswered, it closes the session after about a minute.
    """
    import aiohttp

    url = f"{livekit_url.replace('http', 'ws', 1)}/rtc?access_token={agent_token(identity, room, attributes)}" \
          "&auto_subscribe=0&protocol=16"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        joined = await ws.receive(timeout=10)
        assert joined.type == aiohttp.WSMsgType.BINARY, joined  # the join response

        async def drain() -> None:
            async for _ in ws:
                pass

        reading = asyncio.create_task(drain())
        try:
            yield
        finally:
            reading.cancel()

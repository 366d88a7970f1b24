"""register → drain on SIGTERM (bounded) → close, with a stand-in for livekit-agents' AgentServer.

The end-to-end test drains a real worker with running jobs; these cover the
edges it cannot reach quickly: a drain that never finishes, a second signal,
dev mode, and a worker that cannot connect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from worker import lifecycle
from worker.config import WorkerSettings
from worker.roster import get_role

pytestmark = pytest.mark.anyio


def sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class FakeServer:
    def __init__(self, *, jobs_end: bool = True, signals_in_drain: int = 0, fail: Exception | None = None) -> None:
        self.calls: list[object] = []
        self.active_jobs = ["job"]
        self._closed = asyncio.Event()
        self._jobs_end = jobs_end
        self._signals_in_drain = signals_in_drain
        self._fail = fail
        self._on: dict = {}

    def on(self, event, callback):
        self._on.setdefault(event, []).append(callback)

    async def run(self, *, devmode: bool) -> None:
        self.calls.append(("run", devmode))
        if self._fail:
            raise self._fail
        for callback in self._on.get("worker_registered", []):
            callback("AW_test", None)
        sigterm()
        await self._closed.wait()

    async def drain(self, timeout: int) -> None:
        self.calls.append(("drain", timeout))
        for _ in range(self._signals_in_drain):
            sigterm()
        if self._jobs_end:
            self.active_jobs = []
            return
        await asyncio.wait_for(asyncio.Event().wait(), timeout)  # jobs that never end

    async def aclose(self) -> None:
        self.calls.append("aclose")
        self._closed.set()


@pytest.fixture
def serve(monkeypatch):
    async def run(server: FakeServer, *, devmode: bool = False, drain_timeout: int = 1) -> int:
        monkeypatch.setattr(lifecycle, "build_server", lambda settings, role, requests: server)
        settings = WorkerSettings(drain_timeout_seconds=drain_timeout, livekit_api_key="k", health_port=0)
        return await asyncio.wait_for(lifecycle.serve(settings, get_role("driver"), devmode=devmode), 30)
    return run


async def test_sigterm_drains_running_jobs_then_closes(serve, caplog):
    server = FakeServer()
    with caplog.at_level(logging.INFO, logger="switchboard.worker"):
        assert await serve(server, drain_timeout=45) == 0
    assert server.calls == [("run", False), ("drain", 45), "aclose"]
    messages = [r.getMessage() for r in caplog.records]
    assert messages.index("worker registered") < messages.index("draining") < messages.index("drained")


async def test_a_drain_that_outlasts_its_bound_still_closes(serve, caplog):
    server = FakeServer(jobs_end=False)
    with caplog.at_level(logging.INFO, logger="switchboard.worker"):
        assert await serve(server, drain_timeout=1) == 0
    assert server.calls[-1] == "aclose"
    assert "drain timed out; closing with jobs still running" in [r.getMessage() for r in caplog.records]


async def test_a_second_signal_stops_waiting_for_jobs(serve, caplog):
    server = FakeServer(jobs_end=False, signals_in_drain=1)
    with caplog.at_level(logging.INFO, logger="switchboard.worker"):
        # A drain bound far beyond the test's own 30 s limit: only the second signal ends it.
        assert await serve(server, drain_timeout=3600) == 0
    assert server.calls[-1] == "aclose"
    assert "second signal: closing without waiting for jobs" in [r.getMessage() for r in caplog.records]


async def test_dev_mode_closes_without_draining(serve):
    server = FakeServer()
    assert await serve(server, devmode=True) == 0
    assert server.calls == [("run", True), "aclose"]


async def test_a_worker_that_cannot_reach_livekit_exits_non_zero(serve, caplog):
    server = FakeServer(fail=RuntimeError("failed to connect to livekit after 16 attempts"))
    with caplog.at_level(logging.ERROR, logger="switchboard.worker"):
        assert await serve(server) == 1
    assert server.calls == [("run", False), "aclose"]
    assert "failed to connect" in caplog.records[-1].error


async def test_signal_handlers_are_handed_back(serve):
    await serve(FakeServer())
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def test_local_mode_without_espeak_fails_at_start_up_not_in_a_room(caplog):
    settings = WorkerSettings(audio_mode="local", espeak_binary="/nonexistent/espeak-ng", livekit_api_key="k")
    with caplog.at_level(logging.ERROR, logger="switchboard.worker"):
        assert await lifecycle.serve(settings, get_role("driver"), devmode=False) == 1
    assert "espeak-ng" in caplog.records[-1].error

"""How a job's work ends with its job (worker/server.py, _in_background).

In-process, with a stand-in for the one part of livekit-agents' JobContext it uses (the
shutdown callbacks): what is tested is what the callback does with work that will not stop,
a failure no real room produces on demand (a swallowed cancel in worker/drill.py once did,
one room deletion in nine; tests/worker/test_worker_drill.py produces that one for real).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest

from worker import server

pytestmark = pytest.mark.anyio


class Job:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[str], Awaitable[None]]] = []
        self.shutdowns: list[str] = []
        self.job = SimpleNamespace(room=SimpleNamespace(name="room-1"))

    def add_shutdown_callback(self, callback: Callable[[str], Awaitable[None]]) -> None:
        self.callbacks.append(callback)

    def shutdown(self, reason: str = "") -> None:
        self.shutdowns.append(reason)

    async def end(self, reason: str) -> None:
        await asyncio.gather(*(callback(reason) for callback in self.callbacks))


class Stubborn:
    """Work that swallows every cancel, as the drill's round once did, until released."""

    def __init__(self) -> None:
        self.released = False

    async def work(self) -> None:
        while not self.released:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue


async def test_work_that_will_not_stop_does_not_keep_its_job_from_ending(monkeypatch, caplog):
    monkeypatch.setattr(server, "STOP_SECONDS", 0.2)
    job, closed, stubborn = Job(), [], Stubborn()

    async def close() -> None:
        closed.append(True)

    server._in_background(job, "driver", stubborn.work(), close=close)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    with caplog.at_level(logging.INFO, logger="switchboard.worker"):
        await asyncio.wait_for(job.end("room disconnected"), 10)
    stuck = next(r for r in caplog.records if r.getMessage().startswith("job work did not stop"))
    assert "test_worker_server.py" in stuck.stuck_at and "work" in stuck.stuck_at, stuck.stuck_at
    assert closed == [True]  # its audio is still closed
    assert any(r.getMessage() == "job ended" for r in caplog.records)
    stubborn.released = True  # (so the test leaves nothing running)
    await asyncio.wait_for(next(t for t in asyncio.all_tasks() if t.get_name() == "driver-job"), 5)


async def test_work_that_stops_ends_its_job_at_once_and_a_failure_ends_the_job(caplog):
    job = Job()
    server._in_background(job, "driver", asyncio.sleep(3600))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    with caplog.at_level(logging.INFO, logger="switchboard.worker"):
        await asyncio.wait_for(job.end("room disconnected"), 10)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    async def fails() -> None:
        raise RuntimeError("no microphone")

    failing = Job()
    server._in_background(failing, "driver", fails())  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)
    assert failing.shutdowns == ["job failed"]

"""worker/joining.py: a join the job cancels still finishes; a worker of job threads has one FFI
client and no loop monitor unless the operator asks for one."""

from __future__ import annotations

import asyncio
import threading

import pytest

from worker.joining import LOOP_MONITOR_ENV, create_rtc_client, join_room, prepare_thread_jobs

pytestmark = pytest.mark.anyio


class Room:
    def __init__(self) -> None:
        self.left = False

    async def disconnect(self) -> None:
        self.left = True


class JobContext:
    """Only what join_room touches: connect() and room.disconnect()."""

    def __init__(self, takes: float, error: Exception | None = None) -> None:
        self.room = Room()
        self.takes = takes
        self.error = error
        self.joined = False
        self.options: dict = {}

    async def connect(self, **options) -> None:
        self.options = options
        await asyncio.sleep(self.takes)
        if self.error:
            raise self.error
        self.joined = True


async def test_a_join_runs_as_ctx_connect_with_its_options():
    ctx = JobContext(takes=0.01)
    await join_room(ctx, auto_subscribe="none")
    assert ctx.joined and ctx.options == {"auto_subscribe": "none"} and not ctx.room.left


async def test_a_cancelled_join_finishes_then_leaves_then_is_cancelled():
    ctx = JobContext(takes=0.3)
    task = asyncio.create_task(join_room(ctx))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # livekit-agents may cancel again while it waits
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctx.joined, "the join was cut short: the FFI would wait for a ready signal that never comes"
    assert ctx.room.left


async def test_a_failed_join_still_raises_its_own_error_when_cancelled():
    ctx = JobContext(takes=0.2, error=ConnectionError("wait_pc_connection timed out"))
    task = asyncio.create_task(join_room(ctx))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(ConnectionError):
        await task


def test_every_job_thread_sees_the_one_rtc_client_made_on_the_main_thread():
    from livekit.rtc._ffi_client import FfiClient

    create_rtc_client()
    made = FfiClient._instance
    assert made is not None
    seen: list = []
    threads = [threading.Thread(target=lambda: seen.append(FfiClient.instance)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [made] * 8


def test_a_worker_of_job_threads_runs_without_the_loop_monitor(monkeypatch):
    monkeypatch.delenv(LOOP_MONITOR_ENV, raising=False)
    prepare_thread_jobs()
    from livekit.agents.telemetry.loop_monitor import LoopMonitorThresholds

    assert LoopMonitorThresholds.from_env() is None


def test_an_operator_who_sets_the_loop_monitor_keeps_it(monkeypatch):
    monkeypatch.setenv(LOOP_MONITOR_ENV, "500")
    prepare_thread_jobs()
    from livekit.agents.telemetry.loop_monitor import LoopMonitorThresholds

    assert LoopMonitorThresholds.from_env().warn == 0.5

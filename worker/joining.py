"""Joining the room so that a job cancelled mid-join can't take its worker down, and
preparing a worker whose jobs run as threads of one process."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from livekit.agents import JobContext


async def join_room(ctx: JobContext, **options: Any) -> None:
    """`ctx.connect(**options)`, carried to the end even if the job is cancelled meanwhile.

    Room.connect is not cancellation-safe in livekit rtc 1.1.x (python-sdks#784): cut
    short after the FFI has answered, it never sends ReadyForRoomEvent, and 15 s later the
    FFI reports a panic that SIGTERMs the whole process. A job is cancelled mid-join
    whenever its dispatch is deleted or its room closes while it joins, which a burst
    makes routine. In a process per job that costs one job; with jobs in threads it costs
    every agent the worker holds. So a cancelled join is let finish, the room is left, and
    only then does the cancellation go on.
    """
    join = asyncio.ensure_future(ctx.connect(**options))
    cancelled = False
    while True:
        try:
            await asyncio.shield(join)
            break
        except asyncio.CancelledError:
            if join.done():  # the join itself was cancelled, not this task
                raise
            cancelled = True
    if cancelled:
        with contextlib.suppress(Exception):
            await ctx.room.disconnect()
        raise asyncio.CancelledError


# livekit-agents reads it when each job's event loop starts; "0" turns its monitor off.
LOOP_MONITOR_ENV = "LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS"


def prepare_thread_jobs() -> None:
    """Before the first job of a worker that runs its jobs as threads.

    Creates the rtc FFI client (create_rtc_client), and turns livekit-agents'
    event-loop monitor off unless the operator set it: the monitor samples each job
    thread's stack with sys._current_frames from a watchdog thread of its own, and
    with dozens of job threads in one process a 200-room burst wedged whole workers
    (every thread waiting on the GIL or the interpreter's thread-list lock; the
    worker's websocket unread, so livekit-server dropped each job it offered it).
    """
    create_rtc_client()
    os.environ.setdefault(LOOP_MONITOR_ENV, "0")


def create_rtc_client() -> None:
    """Create livekit rtc's FFI client now, on the main thread, before a job thread can race to.

    With jobs in threads: FfiClient.instance is created lazily and without a lock
    (rtc 1.1.21), so two jobs joining at once in a fresh worker can each create one.
    Events then reach only the one stored last, and the other job waits for a
    ConnectCallback that never comes, until the FFI calls it a panic and SIGTERMs the
    worker with every agent in it.
    """
    from livekit.rtc._ffi_client import FfiClient

    FfiClient.instance  # noqa: B018 (the access creates it)

"""A minimal livekit-agents worker for tests: registers one agent name, joins when dispatched, stays silent.

    TEST_AGENT_NAME=driver python -m tests.agents.silent_agent

It makes JOINED observable for real: LiveKit sends the handler the agent's own
participant_joined webhook (kind AGENT, attribute lk.agent_name).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
from collections.abc import AsyncIterator

from livekit.agents import AgentServer, JobContext, JobExecutorType, JobRequest

from worker.joining import join_room, prepare_thread_jobs

logging.basicConfig(level=logging.INFO)


class JoinGate:
    """At most `limit` of this worker's agents joining their rooms at once; the rest wait their turn.

    A burst hands a worker more jobs than it can join at once: each join costs CPU,
    and a hundred joins in flight on a small machine all crawl past their own connect
    timeouts. Accepting a job and joining a little later is what a busy worker does;
    turning the offer down would leave the job to livekit-server, which drops it when
    no worker takes it. Jobs run in threads, each with its own event loop, so the gate
    is a thread semaphore, polled.
    """

    def __init__(self, limit: int) -> None:
        self._places = threading.BoundedSemaphore(limit) if limit > 0 else None

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self._places is None:
            yield
            return
        while not self._places.acquire(blocking=False):
            await asyncio.sleep(0.2)
        try:
            yield
        finally:
            self._places.release()


gate = JoinGate(int(os.environ.get("TEST_AGENT_MAX_JOINING", "0")))

server = AgentServer(
    # Threads, no pre-warmed processes: many jobs on a 2-core machine.
    job_executor_type=JobExecutorType.THREAD,
    num_idle_processes=0,
    # Never mark the worker full: `gate` paces its joins instead.
    load_threshold=math.inf,
    # The default load is this machine's CPU use. livekit-server only offers a job
    # to a worker whose load is under its target (0.7 by default), so a busy
    # 2-core test machine would see dispatches silently dropped.
    load_fnc=lambda: 0.0,
    port=0,
)


async def accept(request: JobRequest) -> None:
    # Like Switchboard's own workers, optionally tag the participant with its dispatch,
    # so the handler can match the join with certainty rather than by name.
    attributes = {}
    if os.environ.get("TEST_AGENT_TAG_DISPATCH") == "1":
        attributes["switchboard.dispatch_id"] = request.job.dispatch_id
    await request.accept(attributes=attributes)


# Seconds an accepted job waits before joining: a window in which LiveKit has assigned
# the job (and named its participant) but nobody is in the room yet.
JOIN_DELAY = float(os.environ.get("TEST_AGENT_JOIN_DELAY", "0"))


@server.rtc_session(agent_name=os.environ["TEST_AGENT_NAME"], on_request=accept)
async def entrypoint(ctx: JobContext) -> None:
    await asyncio.sleep(JOIN_DELAY)
    async with gate.turn():
        await join_room(ctx)
    done = asyncio.Event()
    ctx.room.on("disconnected", lambda *_: done.set())
    await done.wait()


async def main() -> None:
    prepare_thread_jobs()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(server.run())
    await stop.wait()
    await server.aclose()
    run.cancel()


if __name__ == "__main__":
    asyncio.run(main())

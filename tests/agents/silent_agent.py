"""A minimal livekit-agents worker for tests: registers one agent name, joins when dispatched, stays silent.

    TEST_AGENT_NAME=driver python tests/agents/silent_agent.py

It makes JOINED observable for real: LiveKit sends the handler the agent's own
participant_joined webhook (kind AGENT, attribute lk.agent_name).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal

from livekit.agents import AgentServer, JobContext, JobExecutorType, JobRequest

logging.basicConfig(level=logging.INFO)

server = AgentServer(
    # Threads, no pre-warmed processes and no load shedding: many jobs on a 2-core machine.
    job_executor_type=JobExecutorType.THREAD,
    num_idle_processes=0,
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


@server.rtc_session(agent_name=os.environ["TEST_AGENT_NAME"], on_request=accept)
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    done = asyncio.Event()
    ctx.room.on("disconnected", lambda *_: done.set())
    await done.wait()


async def main() -> None:
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

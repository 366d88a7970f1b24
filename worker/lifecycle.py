"""A worker's life, in order: register → serve jobs → drain on SIGTERM → close.

livekit-agents has its own CLI loop for this; ours is written out here so the
drain bound and the exit are ours to read and to test: the first SIGTERM (or
Ctrl-C) stops new jobs and waits for running ones up to the drain timeout, a
second one stops waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from livekit.agents import AgentServer

from .config import WorkerSettings
from .health import HealthServer
from .roster import Role
from .server import JobRequests, build_server

log = logging.getLogger("switchboard.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(settings: WorkerSettings, role: Role, *, devmode: bool) -> int:
    requests = JobRequests(settings, role)
    try:
        server = build_server(settings, role, requests)
    except RuntimeError as exc:
        log.error("worker cannot start", extra={"role": role.name, "error": str(exc)})
        return 1
    server.on("worker_registered", lambda worker_id, _info: log.info(
        "worker registered", extra={"role": role.name, "worker_id": worker_id}))
    # Up before the worker registers, so an orchestrator hears 503 "starting", not silence.
    health = HealthServer(server, settings.health_host, settings.health_port)
    try:
        await health.start()
    except OSError as exc:
        log.error("worker cannot start", extra={"role": role.name, "error": f"health server: {exc}"})
        return 1

    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    try:
        # 1. register, then serve until a signal arrives or the connection gives up.
        running = asyncio.create_task(server.run(devmode=devmode), name="agent-server")
        first_signal = asyncio.create_task(signals.get())
        await asyncio.wait({running, first_signal}, return_when=asyncio.FIRST_COMPLETED)

        # 2. drain: LiveKit gets no new jobs; running ones finish, up to the bound.
        if first_signal.done() and not running.done():
            log.info("stopping", extra={"role": role.name, "signal": first_signal.result().name})
            if not devmode:
                await _drain(server, settings.drain_timeout_seconds, signals)
        first_signal.cancel()

        # 3. close: jobs still running are shut down; the health server stops.
        await server.aclose()
        await requests.aclose()
    finally:
        await health.aclose()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    failure = await _outcome(running)
    if failure is not None:
        log.error("worker stopped on an error", extra={"role": role.name, "error": failure})
        return 1
    log.info("worker closed", extra={"role": role.name})
    return 0


async def _drain(server: AgentServer, timeout: int, signals: asyncio.Queue[signal.Signals]) -> None:
    log.info("draining", extra={"active_jobs": len(server.active_jobs), "timeout_seconds": timeout})
    drain = asyncio.create_task(server.drain(timeout=timeout), name="drain")
    second_signal = asyncio.create_task(signals.get())
    try:
        await asyncio.wait({drain, second_signal}, return_when=asyncio.FIRST_COMPLETED)
        if drain.done():
            try:
                drain.result()
                log.info("drained")
            except TimeoutError:
                log.warning("drain timed out; closing with jobs still running",
                            extra={"active_jobs": len(server.active_jobs)})
            except Exception as exc:  # closing matters more than how the drain failed
                log.error("drain failed; closing", extra={"error": f"{type(exc).__name__}: {exc}"})
        else:
            log.warning("second signal: closing without waiting for jobs",
                        extra={"active_jobs": len(server.active_jobs)})
    finally:
        for task in (drain, second_signal):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, TimeoutError):
                await task


async def _outcome(running: asyncio.Task[None]) -> str | None:
    """Why the server stopped, if it was not asked to; None after a clean close."""
    try:
        await running
    except asyncio.CancelledError:
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None

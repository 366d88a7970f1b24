"""The AgentServer for one role: which jobs it takes, as whom, and what it does in the room.

Job requests are answered in the worker's main process (JobRequests); the
entrypoint and prewarm run in job processes (or threads), so they are
module-level functions that rebuild their settings from the environment.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobProcess, JobRequest

from handler.lazy_livekit import LazyLiveKitAPI
from handler.wire import DISPATCH_ID_ATTRIBUTE

from .capacity import Capacity
from .config import AudioMode, WorkerSettings
from .health import AGENTS_HTTP_HOST, AGENTS_HTTP_PORT
from .identity import ROLE_ATTRIBUTE, IdentityBook, identities_in_room
from .joining import join_room, prepare_thread_jobs
from .persona import resolve_persona
from .roster import Role, get_role

log = logging.getLogger("switchboard.worker")


class JobRequests:
    """Accepts each job it has room for, with an identity a frontend can find, and the persona's name."""

    def __init__(self, settings: WorkerSettings, role: Role) -> None:
        self._settings = settings
        self._role = role
        self.capacity = Capacity(settings.max_jobs, settings.target_load)
        self._book = IdentityBook()
        # Read-only lookups (ListParticipants, ListDispatch): the SDK's failover may replay them.
        self._client = LazyLiveKitAPI(
            settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret.get_secret_value(),
            timeout_seconds=settings.identity_lookup_timeout_seconds, failover=True)

    async def handle(self, request: JobRequest) -> None:
        if not self.capacity.has_room():
            # Not terminated: livekit-server then offers the job to the next worker of the name.
            await request.reject(terminate=False)
            log.info("job refused: at capacity", extra={"job_id": request.id, "room": request.room.name,
                                                        "max_jobs": self.capacity.max_jobs})
            return
        with self.capacity.taking():
            await self._accept(request)

    async def _accept(self, request: JobRequest) -> None:
        persona = resolve_persona(self._role, request.job.metadata)
        taken: set[str] = set()
        try:
            taken = await asyncio.wait_for(
                identities_in_room(self._client(), request.room.name, except_job=request.id),
                self._settings.identity_lookup_timeout_seconds + 0.25)
        except Exception as exc:
            # Better a job with a possibly suffixed identity than no job: this
            # process's own reservations still keep its agents apart.
            log.warning("room lookup failed; choosing the identity from this worker's reservations",
                        extra={"room": request.room.name, "error": type(exc).__name__})
        identity = await self._book.pick(request.room.sid, self._role.name, taken)
        attributes = {ROLE_ATTRIBUTE: self._role.name}
        # Ties this agent's participant to the dispatch that brought it, so Switchboard
        # records JOINED for exactly that dispatch.
        if request.job.dispatch_id:
            attributes[DISPATCH_ID_ATTRIBUTE] = request.job.dispatch_id
        await request.accept(name=persona.name, identity=identity, attributes=attributes)
        log.info("job accepted", extra={"job_id": request.id, "room": request.room.name, "identity": identity,
                                        "persona": persona.name, "slot": persona.switchboard_slot})

    async def aclose(self) -> None:
        await self._client.aclose()


def prewarm(proc: JobProcess) -> None:
    """Load Silero once per job process, before a job waits on it; once per worker if jobs are threads."""
    settings = WorkerSettings()
    if settings.resolved_audio_mode() is AudioMode.LOCAL:
        from .drill import load_vad

        if JobExecutorType(settings.job_executor) is JobExecutorType.THREAD:
            proc.userdata["vad"] = _shared_vad(load_vad)
        else:
            proc.userdata["vad"] = load_vad()


_vad_lock = threading.Lock()
_vad: Any = None


def _shared_vad(load: Any) -> Any:
    """One Silero model for every job thread (each job streams through it with its own state).

    livekit-agents runs prewarm for each job thread, and 1.8.9 keeps every finished job
    thread's process object, userdata and all: a model per job was ~10 MB a job, kept.
    """
    global _vad
    with _vad_lock:
        if _vad is None:
            _vad = load()
        return _vad


async def entrypoint(ctx: JobContext) -> None:
    settings = WorkerSettings()
    role = get_role(ctx.job.agent_name)
    persona = resolve_persona(role, ctx.job.metadata)
    mode = settings.resolved_audio_mode()
    log.info("job started", extra={"role": role.name, "persona": persona.name, "mode": str(mode),
                                   "room": ctx.job.room.name})
    if mode is AudioMode.REALTIME:
        from .realtime import run_realtime

        await join_room(ctx)
        _in_background(ctx, role.name, run_realtime(ctx, persona, settings))
        return

    from .drill import Drill, load_vad
    from .espeak import EspeakTTS, espeak_voice

    # The drill subscribes to its counterpart's microphone alone.
    await join_room(ctx, auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
    vad = ctx.proc.userdata.get("vad") or load_vad()
    tts = EspeakTTS(voice=espeak_voice(persona.voice), binary=settings.espeak_binary)
    drill = Drill(ctx.room, persona, vad, tts)
    _in_background(ctx, role.name, drill.run(), close=drill.aclose)


# How long a job's work may take to stop once its job ends (see _in_background).
STOP_SECONDS = 5.0


def suspended_at(task: asyncio.Task[Any]) -> str:
    """Where a task waits: its chain of awaits, outermost first (`drill.py:239 run > …`)."""
    where = []
    awaited: Any = task.get_coro()
    while (frame := getattr(awaited, "cr_frame", None)) is not None:
        where.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None)
    return " > ".join(where)


def _in_background(ctx: JobContext, role: str, work: Coroutine[Any, Any, None],
                   close: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the job's work beside the entrypoint, which returns at once; stop it as the job ends.

    livekit-agents ends a job when its room disconnects or when LiveKit terminates the job
    (deleting a room terminates its jobs, often before the room's own disconnect arrives),
    and then waits up to 15 s for an entrypoint still running before it cancels it
    (ipc/job_proc_lazy_main.py, _shutdown_job): the job holds its place in this worker's
    capacity all that time. So the work is a task of its own, stopped by a shutdown callback,
    which livekit-agents runs as the job ends; and the work failing ends the job, as an
    entrypoint's exception would. Work that finishes on its own leaves the job in its room,
    as an entrypoint returning does.
    """
    task = asyncio.create_task(work, name=f"{role}-job")

    def finished(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("job failed", exc_info=t.exception(), extra={"role": role, "room": ctx.job.room.name})
            ctx.shutdown(reason="job failed")

    task.add_done_callback(finished)

    async def stop(reason: str) -> None:
        started = time.monotonic()
        room = ctx.job.room.name
        task.cancel()
        # Bounded: until this returns the job holds its place in the worker's capacity, and
        # a job whose work never stops (a swallowed cancel did that once, worker/drill.py)
        # would hold it for good. Cancelled work stops in milliseconds; past the bound the
        # job ends without it, and the log says where it was stuck.
        done, _ = await asyncio.wait({task}, timeout=STOP_SECONDS)
        if not done:
            log.error("job work did not stop; the job ends without it",
                      extra={"role": role, "room": room, "stuck_at": suspended_at(task)})
        if close is not None:
            try:
                await asyncio.wait_for(close(), STOP_SECONDS)
            except TimeoutError:
                log.error("job audio did not close in time; the job ends without it",
                          extra={"role": role, "room": room})
        log.info("job ended", extra={"role": role, "room": room, "reason": reason,
                                     "stop_seconds": round(time.monotonic() - started, 3)})

    ctx.add_shutdown_callback(stop)


def prepare(settings: WorkerSettings) -> None:
    """Fail at start-up, not in the first room, if the audio mode cannot work here."""
    # livekit plugins register on import, and only from the main thread, which
    # job threads are not: import the mode's plugin now.
    if settings.resolved_audio_mode() is AudioMode.REALTIME:
        import livekit.plugins.openai  # noqa: F401
        return
    import livekit.plugins.silero  # noqa: F401

    if shutil.which(settings.espeak_binary) is None:
        raise RuntimeError(f"local mode needs {settings.espeak_binary!r} on PATH (apt-get install espeak-ng)")


def build_server(settings: WorkerSettings, role: Role, requests: JobRequests) -> AgentServer:
    prepare(settings)
    if JobExecutorType(settings.job_executor) is JobExecutorType.THREAD:
        prepare_thread_jobs()
    server = AgentServer(
        job_executor_type=JobExecutorType(settings.job_executor),
        # Its own shedding off: requests.capacity decides and reports the load (see capacity.py).
        load_threshold=math.inf,
        drain_timeout=settings.drain_timeout_seconds,
        num_idle_processes=settings.num_idle_processes,
        shutdown_process_timeout=settings.shutdown_process_timeout_seconds,
        job_memory_warn_mb=settings.job_memory_warn_mb,
        job_memory_limit_mb=settings.job_memory_limit_mb,
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        # Its own health server says 200 while it cannot reach LiveKit: it moves to loopback,
        # and worker/health.py answers on the health port (see there).
        host=AGENTS_HTTP_HOST,
        port=AGENTS_HTTP_PORT,
        setup_fnc=prewarm,
        load_fnc=requests.capacity.load,
        log_level=settings.log_level,
    )
    requests.capacity.count_running(lambda: len(server.active_jobs))
    server.rtc_session(entrypoint, agent_name=role.name, on_request=requests.handle)
    return server


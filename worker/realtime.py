"""Realtime mode: the persona on OpenAI's realtime model, in an AgentSession.

Imported only when OPENAI_API_KEY is set, so local mode never loads the
OpenAI plugin. tests/worker/test_worker_realtime_wire.py runs it against a local
server that speaks the realtime protocol (no real model): what reaches
session.update, the agent's audio in the room, a dropped and a lost connection.

A dropped model connection is the plugin's to restore: it reconnects and sends the
session (persona, instructions) and the conversation again. When it gives up
(livekit-agents' 3 retries), the job ends: livekit-agents' AgentSession would
otherwise count one unrecoverable error of 3 and stay, leaving a silent agent in
the room. The agent leaves, and Switchboard replaces it within its attempt budget.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, JobContext, llm, room_io
from livekit.plugins import openai

from .config import WorkerSettings
from .identity import ROLE_ATTRIBUTE
from .persona import Persona
from .presence import COUNTERPART_ATTRIBUTE, STATE_ATTRIBUTE, DrillState, wait_for_counterpart, wait_for_state

log = logging.getLogger("switchboard.worker")

# RoomIO links only to these kinds by default, and agents are not among them:
# without AGENT here, two agents in a room never hear each other.
LINKABLE_KINDS = [
    rtc.ParticipantKind.PARTICIPANT_KIND_AGENT,
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
]


def instructions_for(persona: Persona) -> str:
    if not persona.script:
        return persona.instructions
    points = "\n".join(f"- {line}" for line in persona.script)
    return f"{persona.instructions}\n\nCover these points, in order, in your own words:\n{points}"


def realtime_model(persona: Persona, settings: WorkerSettings) -> openai.realtime.RealtimeModel:
    return openai.realtime.RealtimeModel(
        model=settings.realtime_model,
        voice=persona.voice,
        # No temperature: the realtime API (GA, what the plugin speaks) has none, and the
        # plugin drops the argument it still accepts. The persona's temperature applies to
        # nothing in this mode; the wire test shows session.update without it.
        api_key=settings.openai_api_key.get_secret_value(),
    )


def room_options(counterpart_identity: str) -> room_io.RoomOptions:
    """Hear the counterpart agent, and only it."""
    return room_io.RoomOptions(participant_kinds=LINKABLE_KINDS, participant_identity=counterpart_identity)


async def run_realtime(ctx: JobContext, persona: Persona, settings: WorkerSettings) -> None:
    counterpart = await wait_for_counterpart(ctx.room, persona.role, persona.counterpart)
    session: AgentSession[None] = AgentSession(llm=realtime_model(persona, settings))
    session.on("error", partial(end_job_on_lost_model, ctx, persona))
    # And if the session closes itself on an error (seen once in a fresh clone's run: its own
    # close failed on the lost connection, and no unrecoverable "error" event came), the job
    # ends too: an agent with no model holds its place in the room and the worker for nothing.
    session.on("close", partial(end_job_on_closed_session, ctx, persona))
    await session.start(agent=Agent(instructions=instructions_for(persona)), room=ctx.room,
                        room_options=room_options(counterpart.identity))
    await ctx.room.local_participant.set_attributes({
        ROLE_ATTRIBUTE: persona.role, STATE_ATTRIBUTE: str(DrillState.LISTENING),
        COUNTERPART_ATTRIBUTE: counterpart.identity})
    log.info("realtime session linked", extra={"role": persona.role, "counterpart": counterpart.identity})
    if persona.speaks_first:
        await wait_for_state(ctx.room, counterpart.identity, {DrillState.LISTENING})
        session.generate_reply(instructions="Open the call now.")


# The reason the job ends with, in the job's shutdown log.
MODEL_LOST_REASON = "realtime model connection lost"


def end_job_on_lost_model(ctx: JobContext, persona: Persona, event: Any) -> None:
    """On the plugin giving up its connection for good, end the job (see the module's docstring)."""
    error = getattr(event, "error", None)
    if not isinstance(error, llm.RealtimeModelError) or error.recoverable:
        return  # the plugin logs its retries itself
    _end_job(ctx, persona, "realtime model connection lost for good", error.error)


def end_job_on_closed_session(ctx: JobContext, persona: Persona, event: Any) -> None:
    """The session closed on an error: end the job (a normal close comes with the job's end)."""
    if (error := getattr(event, "error", None)) is not None:
        _end_job(ctx, persona, "realtime session closed on an error", error)


def _end_job(ctx: JobContext, persona: Persona, what: str, error: object) -> None:
    log.error(f"{what}; ending the job", extra={"role": persona.role, "error": type(error).__name__})
    ctx.shutdown(reason=MODEL_LOST_REASON)

"""Realtime mode: the persona on OpenAI's realtime model, in an AgentSession.

Imported only when OPENAI_API_KEY is set, so local mode never loads the
OpenAI plugin. Untested here (no key, no network): the wiring follows
livekit-agents 1.8's AgentSession and RoomOptions.
"""

from __future__ import annotations

import logging

from livekit import rtc
from livekit.agents import Agent, AgentSession, JobContext, room_io
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
        # Realtime v1 ignores temperature (the plugin keeps it as a deprecated
        # argument); passed so the persona's setting applies where supported.
        temperature=persona.temperature,
        api_key=settings.openai_api_key.get_secret_value(),
    )


def room_options(counterpart_identity: str) -> room_io.RoomOptions:
    """Hear the counterpart agent, and only it."""
    return room_io.RoomOptions(participant_kinds=LINKABLE_KINDS, participant_identity=counterpart_identity)


async def run_realtime(ctx: JobContext, persona: Persona, settings: WorkerSettings) -> None:
    counterpart = await wait_for_counterpart(ctx.room, persona.role, persona.counterpart)
    session = AgentSession(llm=realtime_model(persona, settings))
    await session.start(agent=Agent(instructions=instructions_for(persona)), room=ctx.room,
                        room_options=room_options(counterpart.identity))
    await ctx.room.local_participant.set_attributes({
        ROLE_ATTRIBUTE: persona.role, STATE_ATTRIBUTE: str(DrillState.LISTENING),
        COUNTERPART_ATTRIBUTE: counterpart.identity})
    log.info("realtime session linked", extra={"role": persona.role, "counterpart": counterpart.identity})
    if persona.speaks_first:
        await wait_for_state(ctx.room, counterpart.identity, {DrillState.LISTENING})
        session.generate_reply(instructions="Open the call now.")

"""Realtime mode's wiring, checked without a network or a real key."""

from __future__ import annotations

from livekit import rtc
from pydantic import SecretStr

from worker.config import WorkerSettings
from worker.persona import Persona
from worker.realtime import instructions_for, realtime_model, room_options
from worker.roster import get_role


def test_the_realtime_model_speaks_with_the_persona_voice():
    persona = Persona.from_role(get_role("driver"))
    model = realtime_model(persona, WorkerSettings(openai_api_key=SecretStr("sk-test-not-a-key")))
    assert model.model == "gpt-realtime"
    assert model._opts.voice == "echo"


def test_the_session_links_to_the_counterpart_agent_which_roomio_ignores_by_default():
    options = room_options("dispatcher")
    assert options.participant_identity == "dispatcher"
    assert rtc.ParticipantKind.PARTICIPANT_KIND_AGENT in options.participant_kinds


def test_a_script_becomes_points_to_cover():
    persona = Persona.from_role(get_role("dispatcher"))
    text = instructions_for(persona)
    assert text.startswith(persona.instructions)
    assert all(f"- {line}" in text for line in persona.script)

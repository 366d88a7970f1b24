"""Job metadata overrides the roster's persona; bad metadata is logged and the roster wins."""

from __future__ import annotations

import json
import logging

import pytest

from handler.policy import PlannedDispatch, Rule
from worker.persona import MAX_SCRIPT_LINES, MetadataInvalid, Persona, parse_job_metadata, resolve_persona
from worker.roster import get_role

DRIVER = get_role("driver")
DISPATCHER = get_role("dispatcher")


def switchboard_metadata(agent: str, rule_metadata: dict) -> str:
    """Exactly what the handler sends with a dispatch."""
    return PlannedDispatch(room_sid="RM_1", room_name="drill-1", agent_name=agent, rule=Rule.AGENTS,
                           trigger="room_started", rule_metadata=rule_metadata).job_metadata


def test_empty_metadata_is_the_roster_persona(caplog):
    with caplog.at_level(logging.ERROR):
        assert resolve_persona(DRIVER, "") == Persona.from_role(DRIVER)
    assert not caplog.records


def test_switchboard_metadata_overrides_the_persona_fields():
    raw = switchboard_metadata("driver", {"persona": "Sam", "voice": "onyx", "temperature": 0.6,
                                          "instructions": "Be terse.", "speaks_first": True,
                                          "script": ["Sam here. Over."], "counterpart": "dispatcher"})
    persona = resolve_persona(DRIVER, raw)
    assert persona == Persona(role="driver", name="Sam", instructions="Be terse.", voice="onyx", temperature=0.6,
                              speaks_first=True, script=("Sam here. Over.",), counterpart="dispatcher",
                              switchboard_slot="DISPATCH#driver")


def test_the_drill_profile_metadata_names_the_persona_and_keeps_the_rest():
    persona = resolve_persona(DISPATCHER, switchboard_metadata("dispatcher", {"persona": "Tim"}))
    assert persona.name == "Tim"
    assert (persona.voice, persona.temperature, persona.speaks_first) == ("alloy", 0.8, True)
    assert persona.script == DISPATCHER.script


def test_a_script_keyed_by_role_gives_each_agent_its_own_lines():
    script = {"dispatcher": ["Radio check. Over."], "driver": ["Loud and clear. Over."]}
    assert resolve_persona(DRIVER, json.dumps({"script": script})).script == ("Loud and clear. Over.",)
    assert resolve_persona(DISPATCHER, json.dumps({"script": script})).script == ("Radio check. Over.",)
    # A script for other roles only leaves this role its default lines.
    assert resolve_persona(DRIVER, json.dumps({"script": {"dispatcher": ["x"]}})).script == DRIVER.script


def test_a_false_speaks_first_and_a_zero_temperature_are_overrides_not_absences():
    persona = resolve_persona(DISPATCHER, json.dumps({"speaks_first": False, "temperature": 0}))
    assert persona.speaks_first is False and persona.temperature == 0


def test_the_metadata_model_reads_every_key_switchboard_adds():
    from handler.wire import JOB_METADATA_KEYS
    from worker.persona import JobMetadata

    assert JOB_METADATA_KEYS <= JobMetadata.model_fields.keys()


def test_unknown_keys_belong_to_the_room_creator_and_are_ignored():
    assert resolve_persona(DRIVER, json.dumps({"lang": "fr", "ticket": 42})) == Persona.from_role(DRIVER)


@pytest.mark.parametrize("raw, problem", [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON list"),
    ('"Tim"', "JSON str"),
    (json.dumps({"persona": ""}), "persona"),
    (json.dumps({"persona": "x" * 65}), "persona"),
    (json.dumps({"temperature": 3}), "temperature"),
    (json.dumps({"temperature": "hot"}), "temperature"),
    (json.dumps({"voice": "alloy; rm -rf /"}), "voice"),
    (json.dumps({"speaks_first": "yes"}), "speaks_first"),
    (json.dumps({"script": "one line"}), "script"),
    (json.dumps({"script": [""]}), "script"),
    (json.dumps({"script": ["line"] * (MAX_SCRIPT_LINES + 1)}), "script"),
    (json.dumps({"counterpart": "no spaces allowed"}), "counterpart"),
])
def test_invalid_metadata_is_logged_and_the_roster_persona_is_used(caplog, raw, problem):
    with caplog.at_level(logging.ERROR, logger="switchboard.worker"):
        persona = resolve_persona(DRIVER, raw)
    assert persona == Persona.from_role(DRIVER)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.role == "driver"
    assert problem in record.error


def test_one_bad_field_discards_the_good_ones_too(caplog):
    # Half an override (Sam's name on Chris's voice) would be harder to debug than none.
    with caplog.at_level(logging.ERROR, logger="switchboard.worker"):
        persona = resolve_persona(DRIVER, json.dumps({"persona": "Sam", "temperature": 9}))
    assert persona.name == "Chris"


def test_the_error_never_echoes_the_metadata_values():
    secret_ish = "call me at +1 555 0100"
    with pytest.raises(MetadataInvalid) as caught:
        parse_job_metadata(json.dumps({"persona": secret_ish * 10}))
    assert "555" not in str(caught.value)

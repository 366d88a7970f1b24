import json

from google.protobuf.json_format import ParseDict
from livekit.protocol.models import ParticipantInfo
from livekit.protocol.webhook import WebhookEvent

from handler.contract import Routing
from handler.policy import Action, Rule, decide, why_not_wanted
from handler.settings import Settings
from tests.webhooks import event, participant

ROUTING = Routing.model_validate({"profiles": {"drill": {"agents": [
    {"name": "dispatcher", "metadata": {"persona": "Tim"}}, {"name": "driver"}]}}})
SETTINGS = Settings(allowed_agents=frozenset({"dispatcher", "driver", "translator", "assistant"}),
                    max_agents_per_room=8)


def ev(kind, metadata=None, who=None, **kw):
    return ParseDict(event(kind, "room-a", "RM_a", metadata, participant=who, **kw), WebhookEvent())


def slots(decision):
    return [p.slot for p in decision.planned]


def test_room_started_dispatches_the_room_agents():
    d = decide(ev("room_started", {"agents": [{"name": "dispatcher"}, {"name": "driver"}]}), ROUTING, SETTINGS)
    assert d.action is Action.DISPATCH
    assert slots(d) == ["DISPATCH#dispatcher", "DISPATCH#driver"]
    assert {p.trigger for p in d.planned} == {"room_started"}


def test_a_human_join_also_plans_the_room_agents_in_case_room_started_was_missed():
    d = decide(ev("participant_joined", {"agents": [{"name": "driver"}]}, participant("alice")), ROUTING, SETTINGS)
    assert slots(d) == ["DISPATCH#driver"]
    assert d.planned[0].trigger == "participant_joined" and d.planned[0].rule is Rule.AGENTS


def test_per_participant_rules_get_one_slot_per_identity():
    meta = {"on_participant_joined": [{"name": "translator", "per": "participant"}]}
    a = decide(ev("participant_joined", meta, participant("alice")), ROUTING, SETTINGS)
    b = decide(ev("participant_joined", meta, participant("bob", "sip")), ROUTING, SETTINGS)
    assert slots(a) == ["DISPATCH#translator#P#alice"]
    assert slots(b) == ["DISPATCH#translator#P#bob"]


def test_per_room_rules_share_one_slot_whoever_joins():
    meta = {"on_participant_joined": [{"name": "assistant", "per": "room"}]}
    a = decide(ev("participant_joined", meta, participant("alice")), ROUTING, SETTINGS)
    b = decide(ev("participant_joined", meta, participant("bob")), ROUTING, SETTINGS)
    assert slots(a) == slots(b) == ["DISPATCH#assistant"]
    assert json.loads(a.planned[0].job_metadata)["participant_identity"] == "alice"


def test_participant_rules_fire_only_for_their_kinds():
    meta = {"on_participant_joined": [{"name": "translator", "kinds": ["sip"]}]}
    d = decide(ev("participant_joined", meta, participant("alice", "standard")), ROUTING, SETTINGS)
    assert d.action is Action.IGNORE and "no rule applies" in d.reason
    d = decide(ev("participant_joined", meta, participant("phone", "sip")), ROUTING, SETTINGS)
    assert slots(d) == ["DISPATCH#translator#P#phone"]


def test_an_agent_joining_never_dispatches_it_confirms():
    meta = {"agents": [{"name": "driver"}], "on_participant_joined": [
        {"name": "translator", "kinds": ["standard", "sip", "ingress"]}]}
    d = decide(ev("participant_joined", meta, participant("agent-1", "agent", {"lk.agent_name": "driver"})),
               ROUTING, SETTINGS)
    assert d.action is Action.CONFIRM_JOIN and not d.planned
    assert (d.agent_name, d.agent_identity) == ("driver", "agent-1")


def test_an_agent_leaving_or_failing_to_connect_is_a_departure_a_person_leaving_is_not():
    meta = {"agents": [{"name": "driver"}]}
    agent = participant("agent-1", "agent", {"lk.agent_name": "driver"})
    for kind in ("participant_left", "participant_connection_aborted"):
        d = decide(ev(kind, meta, agent), ROUTING, SETTINGS)
        assert d.action is Action.AGENT_LEFT and (d.agent_name, d.agent_identity) == ("driver", "agent-1")
        assert decide(ev(kind, meta, participant("alice")), ROUTING, SETTINGS).action is Action.IGNORE


def test_names_outside_the_allowlist_are_rejected_with_the_reason():
    d = decide(ev("room_started", {"agents": [{"name": "driver"}, {"name": "rogue"}]}), ROUTING, SETTINGS)
    assert slots(d) == ["DISPATCH#driver"]
    assert [(r.planned.agent_name, r.reason) for r in d.rejected] == [
        ("rogue", "agent 'rogue' is not in this deployment's allowlist")]


def test_the_cap_keeps_the_first_agents_in_metadata_order():
    capped = SETTINGS.model_copy(update={"max_agents_per_room": 2, "allowed_agents": frozenset("abcd")})
    d = decide(ev("room_started", {"agents": [{"name": n} for n in "abcd"]}), ROUTING, capped)
    assert [p.agent_name for p in d.planned] == ["a", "b"]
    assert [r.reason for r in d.rejected] == ["room cap of 2 agents reached"] * 2


def test_malformed_metadata_is_a_recorded_decision_not_an_error():
    d = decide(ev("room_started", '{"agents": [{"name": "x y"}]}'), ROUTING, SETTINGS)
    assert d.action is Action.IGNORE and d.reason == "room metadata is invalid"
    assert "String should match pattern" in d.error
    assert d.summary()["error"] == d.error


def test_absent_metadata_means_no_agents():
    d = decide(ev("room_started", None), ROUTING, SETTINGS)
    assert d.action is Action.IGNORE and d.reason == "room has no metadata: it asks for no agents"
    assert d.error is None


def test_broken_json_is_recorded_apart_from_absent_and_unrelated_metadata():
    broken = decide(ev("room_started", '{"agents":[{"name":"driver"}'), ROUTING, SETTINGS)
    assert broken.action is Action.IGNORE and broken.reason == "room metadata is not JSON: it asks for no agents"
    assert "Expecting ',' delimiter" in broken.summary()["error"]
    unrelated = decide(ev("room_started", {"tenant": "acme"}), ROUTING, SETTINGS)
    assert unrelated.reason == "room metadata uses none of Switchboard's keys: it asks for no agents"
    assert unrelated.error is None


def test_a_profile_expands_and_explicit_agents_are_added():
    d = decide(ev("room_started", {"profile": "drill", "agents": [{"name": "translator"}]}), ROUTING, SETTINGS)
    assert slots(d) == ["DISPATCH#dispatcher", "DISPATCH#driver", "DISPATCH#translator"]
    assert json.loads(d.planned[0].job_metadata)["persona"] == "Tim"


def test_an_unknown_profile_is_recorded():
    d = decide(ev("room_started", {"profile": "nope"}), ROUTING, SETTINGS)
    assert d.action is Action.IGNORE and "'nope'" in d.error


def test_job_metadata_carries_the_rule_metadata_room_and_trigger():
    meta = {"on_participant_joined": [{"name": "translator", "metadata": {"lang": "fr"}}]}
    d = decide(ev("participant_joined", meta, participant("alice")), ROUTING, SETTINGS)
    job = json.loads(d.planned[0].job_metadata)
    assert job == {"lang": "fr", "room_name": "room-a", "room_sid": "RM_a", "trigger": "participant_joined",
                   "rule": "on_participant_joined", "participant_identity": "alice",
                   "switchboard_slot": "DISPATCH#translator#P#alice"}


def test_room_finished_ends_and_other_events_are_ignored():
    assert decide(ev("room_finished"), ROUTING, SETTINGS).action is Action.END_ROOM
    d = decide(ev("track_published", {"agents": [{"name": "driver"}]}), ROUTING, SETTINGS)
    assert d.action is Action.IGNORE and "track_published" in d.reason


def test_identities_with_control_characters_stay_in_their_own_slot():
    meta = {"on_participant_joined": [{"name": "translator"}]}
    d = decide(ev("participant_joined", meta, participant("ali\x00ce\n#P#x")), ROUTING, SETTINGS)
    assert slots(d) == ["DISPATCH#translator#P#ali\x00ce\n#P#x"]


def test_a_number_too_long_for_python_is_a_clear_error_not_absent_metadata():
    d = decide(ev("room_started", '{"agents": [{"name": "driver", "metadata": {"n": ' + "9" * 5000 + "}}]}"),
               ROUTING, SETTINGS)
    assert d.action is Action.IGNORE and "5000-digit number" in d.error


def test_nan_and_infinity_are_refused_they_would_reach_agents_as_invalid_json():
    for constant in ("NaN", "Infinity", "-Infinity"):
        d = decide(ev("room_started", '{"agents": [{"name": "driver", "metadata": {"x": ' + constant + "}}]}"),
                   ROUTING, SETTINGS)
        assert d.action is Action.IGNORE and constant in d.error, constant


def test_an_explicit_participant_rule_replaces_the_profiles_rule_of_the_same_name():
    routing = Routing.model_validate({"profiles": {"calls": {"on_participant_joined": [
        {"name": "translator", "per": "participant"}]}}})
    meta = {"profile": "calls", "on_participant_joined": [{"name": "translator", "per": "room"}]}
    d = decide(ev("participant_joined", meta, participant("alice")), routing, SETTINGS)
    assert slots(d) == ["DISPATCH#translator"]


def test_a_participant_plan_carries_its_presence():
    who = participant("alice")
    d = decide(ev("participant_joined", {"on_participant_joined": [{"name": "translator"}]}, who), ROUTING, SETTINGS)
    assert d.planned[0].participant_sid == who["sid"] and d.planned[0].participant_joined_ms > 0


def _room_and_people(metadata, *people):
    e = ev("participant_joined", metadata, people[0] if people else participant("x"))
    present = [ParseDict(p, ParticipantInfo()) for p in people]
    return e.room, present


def test_a_room_agent_is_still_wanted_while_the_metadata_names_it():
    meta = {"agents": [{"name": "driver"}]}
    [planned] = decide(ev("room_started", meta), ROUTING, SETTINGS).planned
    room, present = _room_and_people(meta)
    assert why_not_wanted(planned, room, present, ROUTING, SETTINGS) == ""
    room, present = _room_and_people({"agents": [{"name": "dispatcher"}]})
    assert why_not_wanted(planned, room, present, ROUTING, SETTINGS) == \
        "the room's metadata no longer asks for DISPATCH#driver"


def test_a_per_participant_agent_is_wanted_while_its_participant_is_there_as_a_kind_the_rule_takes():
    meta = {"on_participant_joined": [{"name": "translator", "per": "participant", "kinds": ["sip"]}]}
    [planned] = decide(ev("participant_joined", meta, participant("phone", "sip")), ROUTING, SETTINGS).planned
    room, present = _room_and_people(meta, participant("phone", "sip"), participant("alice"))
    assert why_not_wanted(planned, room, present, ROUTING, SETTINGS) == ""
    room, present = _room_and_people(meta, participant("alice"))
    assert why_not_wanted(planned, room, present, ROUTING, SETTINGS) == "phone has left too"
    # The same identity back as another kind: the rule decides on the kind it has now.
    room, present = _room_and_people(meta, participant("phone", "standard"))
    assert why_not_wanted(planned, room, present, ROUTING, SETTINGS) == \
        "the room's metadata no longer asks for DISPATCH#translator#P#phone"
    # Agents are nobody a participant rule serves.
    room, present = _room_and_people(meta, participant("phone", "agent"))
    assert why_not_wanted(planned, room, present, ROUTING, SETTINGS) == "phone has left too"


def test_a_per_room_participant_agent_is_wanted_while_anyone_it_serves_is_there():
    meta = {"on_participant_joined": [{"name": "assistant", "per": "room"}]}
    [planned] = decide(ev("participant_joined", meta, participant("alice")), ROUTING, SETTINGS).planned
    room, present = _room_and_people(meta, participant("bob"))
    assert why_not_wanted(planned, room, present, ROUTING, SETTINGS) == ""
    room, present = _room_and_people(meta)
    assert why_not_wanted(planned, room, present, ROUTING, SETTINGS) == "nobody is left in the room"

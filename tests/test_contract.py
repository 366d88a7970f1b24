import json

import pytest
from hypothesis import given, settings, strategies as st

from handler.contract import AgentPlan, MetadataError, MetadataNotJson, Routing, parse_room_metadata

LIMIT = 64 * 1024


@pytest.mark.parametrize("raw", ["", "   ", "[1, 2]", '"text"', "42",
                                 '{"tenant": "acme", "theme": "dark"}'])
def test_absent_and_unrelated_metadata_ask_for_no_agents(raw):
    assert parse_room_metadata(raw, max_bytes=LIMIT) is None


@pytest.mark.parametrize("raw", ["not json", '{"agents":[{"name":"driver"}'])
def test_metadata_that_is_not_json_says_so_with_the_parsers_message(raw):
    # A typo in JSON meant for Switchboard must not read as "asks for no agents".
    with pytest.raises(MetadataNotJson, match=r"line 1 column \d+"):
        parse_room_metadata(raw, max_bytes=LIMIT)


def test_the_documented_example_parses():
    raw = json.dumps({
        "agents": [{"name": "dispatcher", "metadata": {"persona": "Tim"}}, {"name": "driver"}],
        "on_participant_joined": [{"name": "translator", "kinds": ["standard", "sip"], "per": "participant",
                                   "metadata": {}}],
        "profile": "drill", "tenant": "kept-for-the-app"})
    meta = parse_room_metadata(raw, max_bytes=LIMIT)
    assert [a.name for a in meta.agents] == ["dispatcher", "driver"]
    assert meta.agents[0].metadata == {"persona": "Tim"}
    rule = meta.on_participant_joined[0]
    assert rule.kinds == {"standard", "sip"} and rule.per == "participant"
    assert meta.profile == "drill"


def test_participant_rules_default_to_standard_and_sip_per_participant():
    meta = parse_room_metadata('{"on_participant_joined": [{"name": "t"}]}', max_bytes=LIMIT)
    assert meta.on_participant_joined[0].kinds == {"standard", "sip"}
    assert meta.on_participant_joined[0].per == "participant"


@pytest.mark.parametrize("raw, fragment", [
    ('{"agents": [{"name": ""}]}', "name"),
    ('{"agents": [{"name": "has space"}]}', "String should match pattern"),
    ('{"agents": [{"name": "ok", "metdata": {}}]}', "Extra inputs are not permitted"),
    ('{"agents": "driver"}', "agents"),
    ('{"on_participant_joined": [{"name": "t", "kinds": ["agent"]}]}', "kinds"),
    ('{"on_participant_joined": [{"name": "t", "per": "everyone"}]}', "per"),
    ('{"agents": [{"name": "a", "metadata": [1]}]}', "metadata"),
])
def test_metadata_that_breaks_the_contract_is_an_error_with_pydantics_message(raw, fragment):
    with pytest.raises(MetadataError) as info:
        parse_room_metadata(raw, max_bytes=LIMIT)
    assert fragment in str(info.value)
    assert "errors.pydantic.dev" not in str(info.value)


def test_thousands_of_agents_are_refused_before_anything_is_planned():
    raw = json.dumps({"agents": [{"name": f"a{i}"} for i in range(5000)]})
    with pytest.raises(MetadataError, match="at most 64"):
        parse_room_metadata(raw, max_bytes=10 * LIMIT)


def test_oversized_metadata_is_refused():
    raw = json.dumps({"agents": [{"name": "a", "metadata": {"blob": "x" * LIMIT}}]})
    with pytest.raises(MetadataError, match="over the"):
        parse_room_metadata(raw, max_bytes=LIMIT)


def test_deeply_nested_metadata_is_an_error_not_a_crash():
    raw = '{"agents": [{"name": "a", "metadata": ' + '{"x": ' * 50_000 + "1" + "}" * 50_000 + "}]}"
    with pytest.raises(MetadataError, match="nested too deeply"):
        parse_room_metadata(raw, max_bytes=10 * 1024 * 1024)


def test_profiles_merge_with_explicit_rules_and_explicit_wins(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("profiles:\n  drill:\n    agents:\n      - {name: dispatcher, metadata: {persona: Tim}}\n"
                    "      - {name: driver}\n")
    routing = Routing.load(path)
    explicit = AgentPlan.model_validate({"agents": [{"name": "driver", "metadata": {"persona": "Chris"}},
                                                   {"name": "observer"}]})
    merged = routing.profiles["drill"].merged_with(explicit)
    assert [(a.name, a.metadata) for a in merged.agents] == [
        ("dispatcher", {"persona": "Tim"}), ("driver", {"persona": "Chris"}), ("observer", {})]


def test_a_broken_routing_file_fails_at_load(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("profiles:\n  x:\n    agents: [{nme: typo}]\n")
    with pytest.raises(ValueError):
        Routing.load(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), json_values.map(json.dumps),
                 st.dictionaries(st.sampled_from(["agents", "on_participant_joined", "profile", "x"]),
                                 json_values, max_size=3).map(json.dumps)))
def test_any_metadata_yields_a_plan_none_or_a_metadata_error(raw):
    try:
        result = parse_room_metadata(raw, max_bytes=LIMIT)
    except MetadataError as exc:
        assert str(exc)
    else:
        assert result is None or isinstance(result, AgentPlan)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({"name": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)},
                                      optional={"metadata": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)}),
                max_size=10))
def test_valid_agent_lists_round_trip(agents):
    meta = parse_room_metadata(json.dumps({"agents": agents}), max_bytes=LIMIT)
    assert [a.name for a in meta.agents] == [a["name"] for a in agents]


def test_the_nesting_limit_is_the_same_on_every_python():
    from handler.contract import MAX_METADATA_DEPTH

    def nested(levels: int) -> str:  # the document's own two levels (object, agents list) plus the agent's
        inner = levels - 3
        return '{"agents": [{"name": "a", "metadata": ' + '{"x": ' * inner + "1" + "}" * inner + "}]}"

    assert parse_room_metadata(nested(MAX_METADATA_DEPTH), max_bytes=10 * 1024 * 1024) is not None
    with pytest.raises(MetadataError, match="nested too deeply"):
        parse_room_metadata(nested(MAX_METADATA_DEPTH + 1), max_bytes=10 * 1024 * 1024)

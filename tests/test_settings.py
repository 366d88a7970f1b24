import pytest
from pydantic import ValidationError

from handler.settings import Settings


def test_signing_keys_include_the_main_key_and_the_extra_pairs(monkeypatch):
    monkeypatch.setenv("LIVEKIT_API_KEY", "main")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "main-secret")
    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_KEYS", "old:old-secret, other:other-secret")
    assert Settings().signing_keys == {"main": "main-secret", "old": "old-secret", "other": "other-secret"}


def test_extra_keys_accept_json(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_KEYS", '{"a": "sa", "b": "sb"}')
    assert Settings().signing_keys == {"a": "sa", "b": "sb"}


def test_a_malformed_key_pair_is_refused_without_echoing_the_secret(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_KEYS", "only-a-secret-value")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "only-a-secret-value" not in str(info.value).split("input_value")[0]
    assert "key:secret" in str(info.value)


def test_secrets_are_not_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("LIVEKIT_API_SECRET", "very-secret-value")
    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_KEYS", "k:another-secret-value")
    text = repr(Settings())
    assert "very-secret-value" not in text and "another-secret-value" not in text


def test_allowlist_from_comma_list_or_json(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_ALLOWED_AGENTS", "driver, dispatcher,")
    assert Settings().allowed_agents == {"driver", "dispatcher"}
    monkeypatch.setenv("SWITCHBOARD_ALLOWED_AGENTS", '["a", "b"]')
    assert Settings().allowed_agents == {"a", "b"}


def test_region_comes_from_the_standard_variable(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert Settings().aws_region == "eu-west-1"


def test_spaces_around_a_key_pair_are_not_part_of_the_key_or_the_secret(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_KEYS", "k1: s1 , k2 :s2")
    assert Settings().signing_keys == {"k1": "s1", "k2": "s2"}
    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_KEYS", '{" k3 ": " s3 "}')
    assert Settings().signing_keys == {"k3": "s3"}


# --- several LiveKit projects -------------------------------------------------------------------

import json  # noqa: E402

from handler.settings import DEFAULT_PROJECT  # noqa: E402

TWO_PROJECTS = {
    "staging": {"url": "wss://staging.example", "keys": {"APIstaging": "staging-secret-value"}},
    "production": {"url": "wss://prod.example", "keys": {"APIold": "old-secret-value", "APInew": "new-secret-value"},
                   "dispatch_key": "APInew", "allowed_agents": ["driver"], "routing_file": "infra/routing.yaml"},
}


def test_the_legacy_variables_are_one_project_named_default(monkeypatch):
    monkeypatch.setenv("LIVEKIT_URL", "wss://one.example")
    monkeypatch.setenv("LIVEKIT_API_KEY", "main")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "main-secret")
    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_KEYS", "old:old-secret")
    settings = Settings()
    [project] = settings.projects.values()
    assert (project.name, project.url, sorted(project.keys), project.api_key, project.api_secret) == (
        DEFAULT_PROJECT, "wss://one.example", ["main", "old"], "main", "main-secret")
    assert settings.project_of_key == {"main": "default", "old": "default"}


def test_projects_from_json_with_their_keys_dispatch_key_and_overrides(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_PROJECTS", json.dumps(TWO_PROJECTS))
    settings = Settings()
    assert sorted(settings.projects) == ["production", "staging"]
    production = settings.project("production")
    assert (production.api_key, production.api_secret) == ("APInew", "new-secret-value")
    assert production.allowed_agents == {"driver"} and str(production.routing_file) == "infra/routing.yaml"
    assert settings.project("staging").api_key == "APIstaging"  # one key: it is the dispatch key
    assert settings.project_of_key == {"APIstaging": "staging", "APIold": "production", "APInew": "production"}
    assert settings.signing_keys["APIold"] == "old-secret-value"
    assert "secret-value" not in repr(settings)


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["staging"].update(keys={"APIold": "another-secret-value"}), "key 'APIold' is in projects"),
    (lambda p: p["production"].pop("dispatch_key"), "set dispatch_key"),
    (lambda p: p["production"].update(dispatch_key="APIother"), "dispatch_key 'APIother' is not one of its keys"),
    (lambda p: p.update({"Bad#Name": p.pop("staging")}), "String should match pattern"),
    (lambda p: p["staging"].update(keys={}), "at least 1 item"),
    (lambda p: p["staging"].pop("url"), "Field required"),
    (lambda p: p["staging"].update(secret="oops-secret-value"), "Extra inputs are not permitted"),
])
def test_a_bad_project_configuration_names_the_problem_and_never_a_secret(monkeypatch, change, message):
    projects = json.loads(json.dumps(TWO_PROJECTS))
    change(projects)
    monkeypatch.setenv("SWITCHBOARD_PROJECTS", json.dumps(projects))
    with pytest.raises(ValidationError) as info:
        Settings()
    assert message in str(info.value)
    assert "secret-value" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": {"url": "u", "keys": {"k": "hunter2-secret"}}, "a": {}}', "names 'a' twice"),
    ('{"a": {"url": "u", "keys": {"k": "hunter2-secret"}', "is not JSON"),
    ("[]", "must be a JSON object"),
    ("{}", "names no project"),
])
def test_projects_that_are_not_a_json_object_of_projects_are_refused(monkeypatch, text, message):
    monkeypatch.setenv("SWITCHBOARD_PROJECTS", text)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert message in str(info.value) and "hunter2" not in str(info.value)


def test_the_legacy_variables_beside_projects_must_agree_with_them(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_PROJECTS", json.dumps(TWO_PROJECTS))
    monkeypatch.setenv("LIVEKIT_API_KEY", "APInew")  # what the workers read: one of the projects' keys
    monkeypatch.setenv("LIVEKIT_API_SECRET", "new-secret-value")
    assert Settings().project_of_key["APInew"] == "production"
    monkeypatch.setenv("LIVEKIT_API_SECRET", "a-different-secret-value")
    with pytest.raises(ValidationError, match="LIVEKIT_API_SECRET differs") as info:
        Settings()
    assert "secret-value" not in str(info.value)
    monkeypatch.setenv("LIVEKIT_API_KEY", "APIelsewhere")
    with pytest.raises(ValidationError, match="in no project"):
        Settings()
    monkeypatch.delenv("LIVEKIT_API_KEY")
    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_KEYS", "k:webhook-secret-value")
    with pytest.raises(ValidationError, match="cannot be used with SWITCHBOARD_PROJECTS"):
        Settings()


def test_the_readmes_two_project_example_is_a_valid_configuration(monkeypatch):
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Several LiveKit projects", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("SWITCHBOARD_PROJECTS", example)
    settings = Settings()
    assert sorted(settings.projects) == ["production", "staging"]
    assert settings.project("production").api_key == "APIprodNew"

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

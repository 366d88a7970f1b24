"""handler/durations.py and handler/store_hint.py: what an operator types, and reads after an error."""

from __future__ import annotations

import argparse

import pytest

from handler.durations import parse_duration
from handler.settings import Settings
from handler.store_hint import store_hint


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800),
                                           ("1w", 604800), (" 1.5 h ", 5400)])
def test_a_duration_is_a_number_and_a_unit(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1y", "-1h", "1h30m"])
def test_anything_else_is_argparses_own_error(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not a duration like 90s"):
        parse_duration(text)


def test_the_hint_names_what_to_set(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_TABLE_NAME", "t-1")
    settings = Settings()
    assert "AWS_ACCESS_KEY_ID" in store_hint("NoCredentialsError: Unable to locate credentials", settings)
    assert "AWS_ENDPOINT_URL_DYNAMODB" in store_hint("EndpointConnectionError: ...", settings)
    assert "no table 't-1'" in store_hint("ResourceNotFoundException: ...", settings)
    assert store_hint("ThrottlingException", settings) == ""

"""The roster: the roles a worker can serve, defined once."""

from __future__ import annotations

import dataclasses

import pytest

from worker.roster import ROSTER, UnknownRole, get_role


def test_dispatcher_is_tim_on_alloy_and_opens_the_call():
    role = get_role("dispatcher")
    assert (role.name, role.persona, role.voice, role.temperature, role.speaks_first) == (
        "dispatcher", "Tim", "alloy", 0.8, True)


def test_driver_is_chris_on_echo_and_answers():
    role = get_role("driver")
    assert (role.name, role.persona, role.voice, role.temperature, role.speaks_first) == (
        "driver", "Chris", "echo", 0.7, False)


def test_every_role_is_complete_and_keyed_by_its_name():
    assert set(ROSTER) == {"dispatcher", "driver"}
    for name, role in ROSTER.items():
        assert role.name == name
        assert role.persona and role.instructions and role.voice and role.script
        assert 0 <= role.temperature <= 2


def test_exactly_one_role_opens_the_drill():
    assert [r.name for r in ROSTER.values() if r.speaks_first] == ["dispatcher"]


def test_the_roster_cannot_be_changed_at_runtime():
    with pytest.raises(TypeError):
        ROSTER["translator"] = ROSTER["driver"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ROSTER["driver"].persona = "Sam"  # type: ignore[misc]


def test_an_unknown_role_names_the_known_ones():
    with pytest.raises(UnknownRole, match="dispatcher, driver"):
        get_role("translator")

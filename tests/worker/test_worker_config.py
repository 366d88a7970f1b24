"""The worker's configuration: one pydantic-settings object, production defaults."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from worker.config import AudioMode, WorkerSettings

ENV_NAMES = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_AGENT_NAME", "OPENAI_API_KEY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("SWITCHBOARD_WORKER_")]:
        monkeypatch.delenv(name)


def test_production_defaults():
    s = WorkerSettings()
    assert s.health_port == 8081
    assert s.drain_timeout_seconds == 120
    assert (s.max_jobs, s.target_load) == (6, 0.7)
    assert s.job_executor == "process"
    assert s.resolved_audio_mode() is AudioMode.LOCAL


def test_livekit_variables_are_the_ones_livekit_agents_reads(monkeypatch):
    monkeypatch.setenv("LIVEKIT_URL", "wss://lk.example.com")
    monkeypatch.setenv("LIVEKIT_API_KEY", "key")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "s3cr3t-value")
    monkeypatch.setenv("LIVEKIT_AGENT_NAME", "driver")
    s = WorkerSettings()
    assert (s.livekit_url, s.livekit_api_key, s.agent_name) == ("wss://lk.example.com", "key", "driver")
    assert s.livekit_api_secret.get_secret_value() == "s3cr3t-value"


def test_secrets_never_show_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("LIVEKIT_API_SECRET", "s3cr3t-value")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abc")
    text = repr(WorkerSettings()) + str(WorkerSettings().model_dump())
    assert "s3cr3t-value" not in text and "sk-live-abc" not in text


def test_an_openai_key_selects_realtime_unless_local_is_forced(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert WorkerSettings().resolved_audio_mode() is AudioMode.REALTIME
    monkeypatch.setenv("SWITCHBOARD_WORKER_AUDIO_MODE", "local")
    assert WorkerSettings().resolved_audio_mode() is AudioMode.LOCAL


def test_knobs_come_from_prefixed_variables(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_WORKER_HEALTH_PORT", "0")
    monkeypatch.setenv("SWITCHBOARD_WORKER_DRAIN_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("SWITCHBOARD_WORKER_MAX_JOBS", "20")
    monkeypatch.setenv("SWITCHBOARD_WORKER_JOB_EXECUTOR", "thread")
    s = WorkerSettings()
    assert (s.health_port, s.drain_timeout_seconds, s.max_jobs, s.job_executor) == (0, 30, 20, "thread")


@pytest.mark.parametrize("name, value", [
    ("SWITCHBOARD_WORKER_DRAIN_TIMEOUT_SECONDS", "0"),  # livekit-agents reads 0 as "wait forever"
    ("SWITCHBOARD_WORKER_DRAIN_TIMEOUT_SECONDS", "86400"),
    ("SWITCHBOARD_WORKER_TARGET_LOAD", "0"),
    ("SWITCHBOARD_WORKER_TARGET_LOAD", "1.5"),
    ("SWITCHBOARD_WORKER_MAX_JOBS", "0"),
    ("SWITCHBOARD_WORKER_HEALTH_PORT", "70000"),
    ("SWITCHBOARD_WORKER_JOB_EXECUTOR", "fork"),
    ("SWITCHBOARD_WORKER_AUDIO_MODE", "loud"),
])
def test_out_of_range_values_fail_at_start_up(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        WorkerSettings()

"""Every knob a worker has, read once from the environment.

As in handler/settings.py, nothing else in the package reads os.environ for
configuration: the whole surface is this one object.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AudioMode(StrEnum):
    AUTO = "auto"  # realtime when an OpenAI key is set, else local
    LOCAL = "local"
    REALTIME = "realtime"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_WORKER_", extra="ignore")

    # --- Which role this process serves; `python -m worker <role>` overrides it.
    agent_name: str = Field(default="",
                            validation_alias=AliasChoices("LIVEKIT_AGENT_NAME", "SWITCHBOARD_WORKER_AGENT_NAME"))

    # --- LiveKit: the same variables livekit-agents itself reads.
    livekit_url: str = Field(default="ws://127.0.0.1:7880", validation_alias=AliasChoices("LIVEKIT_URL"))
    livekit_api_key: str = Field(default="", validation_alias=AliasChoices("LIVEKIT_API_KEY"))
    livekit_api_secret: SecretStr = Field(default=SecretStr(""), validation_alias=AliasChoices("LIVEKIT_API_SECRET"))

    # --- Audio.
    audio_mode: AudioMode = AudioMode.AUTO
    openai_api_key: SecretStr = Field(default=SecretStr(""), validation_alias=AliasChoices("OPENAI_API_KEY"))
    realtime_model: str = "gpt-realtime"
    espeak_binary: str = "espeak-ng"

    # --- Production: livekit-agents' own health server, drain and load shedding.
    health_host: str = ""  # all interfaces, so a container's HEALTHCHECK and a kubelet reach it
    health_port: int = Field(default=8081, ge=0, le=65535)  # 0: any free port
    # SIGTERM stops new jobs, then waits this long for running ones. Keep it
    # below the orchestrator's kill deadline (ECS stopTimeout, k8s grace period).
    drain_timeout_seconds: int = Field(default=120, ge=1, le=3600)
    # Capacity: jobs this worker carries at once (see worker/capacity.py and the README
    # on sizing). A request beyond it is turned down, for LiveKit to offer elsewhere.
    max_jobs: int = Field(default=6, ge=1, le=500)
    # livekit-server's agents.target_load (0.7 unless its config sets it): it offers no
    # job to a worker reporting this load or more. A worker with room reports
    # target_load × jobs / max_jobs, a full one 1.0.
    target_load: float = Field(default=0.7, gt=0, le=1)
    job_executor: Literal["process", "thread"] = "process"
    num_idle_processes: int = Field(default=1, ge=0, le=16)
    job_memory_warn_mb: float = Field(default=1000, gt=0)
    job_memory_limit_mb: float = Field(default=0, ge=0)  # 0: no limit
    shutdown_process_timeout_seconds: float = Field(default=10.0, gt=0)

    # --- Job requests: livekit-server gives a worker 3 s to answer an offer (its internal
    # request timeout), so the identity lookup done before answering must end well inside it.
    identity_lookup_timeout_seconds: float = Field(default=1.0, gt=0, le=2)

    log_level: str = "INFO"

    def resolved_audio_mode(self) -> AudioMode:
        if self.audio_mode is AudioMode.AUTO:
            return AudioMode.REALTIME if self.openai_api_key.get_secret_value() else AudioMode.LOCAL
        return self.audio_mode

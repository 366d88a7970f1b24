"""Every knob Switchboard has, read once from the environment.

Nothing else in the package reads os.environ: a newcomer finds the whole
configuration surface here, and tests build a Settings object directly.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

AGENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Settings(BaseSettings):
    # hide_input_in_errors: a bad value may be a secret (from the environment or the
    # Secrets Manager secret), and a start-up ValidationError lands in the logs.
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore", hide_input_in_errors=True)

    # --- LiveKit: the server we dispatch through, and the keys webhooks are signed with.
    livekit_url: str = Field(
        default="http://127.0.0.1:7880",
        validation_alias=AliasChoices("LIVEKIT_URL", "SWITCHBOARD_LIVEKIT_URL"),
    )
    livekit_api_key: str = Field(
        default="",
        validation_alias=AliasChoices("LIVEKIT_API_KEY", "SWITCHBOARD_LIVEKIT_API_KEY"),
    )
    livekit_api_secret: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("LIVEKIT_API_SECRET", "SWITCHBOARD_LIVEKIT_API_SECRET"),
    )
    # Extra key pairs accepted on incoming webhooks, for key rotation and for
    # several LiveKit projects feeding one deployment: "key1:secret1,key2:secret2"
    # or a JSON object {"key1": "secret1"}.
    webhook_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    # Deployed: a Secrets Manager secret holding the three variables above as JSON,
    # read once at start-up (aws_secrets.py). The environment still wins over it.
    livekit_secret_arn: str | None = None

    # --- DynamoDB. The endpoint comes from botocore's own AWS_ENDPOINT_URL_DYNAMODB.
    table_name: str = "switchboard-dispatch"
    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "SWITCHBOARD_AWS_REGION"),
    )

    # --- The dispatch policy.
    # Agent names this deployment runs; anything else is REJECTED. Empty means
    # "allow none", so a misconfigured deployment dispatches nothing rather than anything.
    allowed_agents: Annotated[frozenset[str], NoDecode] = frozenset()
    routing_file: Path | None = None
    max_agents_per_room: int = Field(default=8, ge=1, le=100)
    max_metadata_bytes: int = Field(default=64 * 1024, ge=1024)

    # --- Claims and retention.
    claim_lease_seconds: float = Field(default=30.0, gt=0)
    max_dispatch_attempts: int = Field(default=3, ge=1)
    dispatch_retention_days: int = Field(default=30, ge=1)
    event_retention_days: int = Field(default=7, ge=1)

    # --- Confirmation and the sweeper.
    # A dispatch whose agent has not joined by then is re-dispatched, with the
    # wait doubling for each attempt, up to max_dispatch_attempts.
    confirm_deadline_seconds: float = Field(default=15.0, gt=0)
    # A joined agent the sweeper finds missing from its room is replaced only after
    # this long: past LiveKit's 30 s limit on a queued webhook, its participant_left
    # has either been handled or will never come.
    missing_agent_grace_seconds: float = Field(default=45.0, gt=0)
    # How far back the sweeper looks for slots that never settled.
    sweep_window_days: int = Field(default=2, ge=1)

    # --- Bounded outbound calls: LiveKit drops a room's events after 30 s
    # queued, so one webhook must never hold its room's queue for long.
    livekit_timeout_seconds: float = Field(default=5.0, gt=0)
    dynamodb_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    dynamodb_read_timeout_seconds: float = Field(default=3.0, gt=0)
    dynamodb_max_attempts: int = Field(default=3, ge=1)
    retry_after_seconds: int = Field(default=2, ge=1)
    # One webhook's whole budget, whatever its bounded calls add up to: past it the answer
    # is 503 and LiveKit sends it again. Well under Lambda's 25 s and LiveKit's 30 s queue.
    webhook_budget_seconds: float = Field(default=15.0, gt=0, le=25)

    # --- Lambda SnapStart. Lambda Web Adapter (v1.1.0+) POSTs to these paths on loopback
    # before the snapshot and after each restore (it answers 403 to anyone else asking for
    # them); unset, the app has no such routes. See handler/snapstart.py.
    snapstart_before_checkpoint_path: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH"))
    snapstart_after_restore_path: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH"))

    max_body_bytes: int = 1024 * 1024
    # A body trickling in slower than this holds the room's queue: answer 408.
    body_read_timeout_seconds: float = Field(default=10.0, gt=0)
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        from .aws_secrets import SecretSettingsSource

        return init_settings, env_settings, dotenv_settings, SecretSettingsSource(settings_cls), file_secret_settings

    @field_validator("webhook_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            loaded = json.loads(text)
            return {str(k).strip(): str(v).strip() for k, v in loaded.items()} if isinstance(loaded, dict) else loaded
        pairs: dict[str, str] = {}
        for item in text.split(","):
            key, sep, secret = (part.strip() for part in item.strip().partition(":"))
            if not sep or not key or not secret:
                # Never echo the item: it holds a secret.
                raise ValueError("SWITCHBOARD_WEBHOOK_KEYS entries must look like key:secret")
            pairs[key] = secret
        return pairs

    @field_validator("allowed_agents", mode="before")
    @classmethod
    def _parse_agents(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return frozenset(json.loads(text))
            return frozenset(part.strip() for part in text.split(",") if part.strip())
        return value

    @cached_property
    def signing_keys(self) -> dict[str, str]:
        """Every api key → secret accepted on incoming webhooks."""
        keys = {k: v.get_secret_value() for k, v in self.webhook_keys.items()}
        if self.livekit_api_key and self.livekit_api_secret.get_secret_value():
            keys.setdefault(self.livekit_api_key, self.livekit_api_secret.get_secret_value())
        return keys

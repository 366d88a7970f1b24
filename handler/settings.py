"""Every knob Switchboard has, read once from the environment.

Nothing else in the package reads os.environ: a newcomer finds the whole
configuration surface here, and tests build a Settings object directly.
That is also why it runs past ~300 lines: one field, its default and its
reason per knob, and the validation that turns a bad value into a clear error.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

AGENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

# The project LIVEKIT_URL/LIVEKIT_API_KEY/LIVEKIT_API_SECRET (and SWITCHBOARD_WEBHOOK_KEYS)
# describe, and the one whose records keep the table layout of before projects (table.room_pk).
DEFAULT_PROJECT = "default"
# A project name is part of every record's key: no "#" (the key separator), short, lower case.
PROJECT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"


class Project(BaseModel):
    """One LiveKit project fed into this deployment: where to call, and with which keys.

    `keys` holds every key LiveKit may sign this project's webhooks with (two during a
    rotation); the key that signed a webhook selects its project, so a key belongs to one
    project only. `dispatch_key` is the one Switchboard calls LiveKit with, chosen on
    purpose: during a rotation it moves from the old key to the new one at a step of its own.
    `allowed_agents` and `routing_file` override the deployment's for this project's rooms.
    """

    # hide_input_in_errors: the input holds secrets.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(pattern=PROJECT_NAME_PATTERN)
    url: str = Field(min_length=1)
    keys: dict[str, SecretStr] = Field(min_length=1)
    dispatch_key: str = ""
    allowed_agents: frozenset[str] | None = None
    routing_file: Path | None = None

    @field_validator("keys", mode="before")
    @classmethod
    def _keys_as_object(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(k).strip(): (v.strip() if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @field_validator("allowed_agents", mode="before")
    @classmethod
    def _agents(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> Project:
        for key, secret in self.keys.items():
            if not key or not secret.get_secret_value():
                raise ValueError(f"project {self.name!r}: every key needs an id and a secret")
        if not self.dispatch_key:
            if len(self.keys) > 1:
                # Two keys mean a rotation: which one calls LiveKit must be a decision, not an accident.
                raise ValueError(f"project {self.name!r} has {len(self.keys)} keys ({', '.join(sorted(self.keys))}): "
                                 "set dispatch_key to the one Switchboard calls LiveKit with")
            object.__setattr__(self, "dispatch_key", next(iter(self.keys)))
        elif self.dispatch_key not in self.keys:
            raise ValueError(f"project {self.name!r}: dispatch_key {self.dispatch_key!r} is not one of its keys "
                             f"({', '.join(sorted(self.keys))})")
        return self

    @property
    def api_key(self) -> str:
        return self.dispatch_key

    @property
    def api_secret(self) -> str:
        return self.keys[self.dispatch_key].get_secret_value() if self.dispatch_key else ""


def _no_duplicate_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise ValueError(f"SWITCHBOARD_PROJECTS names {name!r} twice")
        seen[name] = value
    return seen


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
    # Several LiveKit projects, as JSON: {"<name>": {"url": ..., "keys": {"<key>": "<secret>"},
    # "dispatch_key": ..., "allowed_agents": [...], "routing_file": ...}}. Unset, the four
    # variables above are one project named "default". See `projects`.
    configured_projects: Annotated[dict[str, Project] | None, NoDecode] = Field(
        default=None, validation_alias=AliasChoices("SWITCHBOARD_PROJECTS", "configured_projects"))
    # Deployed: a Secrets Manager secret holding the variables above as JSON,
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
    # An agent session connected to its room for this long without ever becoming active
    # (its media connection failed; LiveKit sends no participant_join for it) will not:
    # the sweeper removes it, and a slot it was meant to fill is dispatched again.
    # Generous: a slow machine's agent can take seconds from connect to active.
    stuck_agent_grace_seconds: float = Field(default=30.0, gt=0)
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

    _projects: dict[str, Project] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
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

    @field_validator("configured_projects", mode="before")
    @classmethod
    def _parse_projects(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                value = json.loads(value, object_pairs_hook=_no_duplicate_names)
            except json.JSONDecodeError as exc:
                # json's message gives the position only, never the text around it.
                raise ValueError(f"SWITCHBOARD_PROJECTS is not JSON: {exc.msg} at line {exc.lineno} "
                                 f"column {exc.colno}") from None
        if isinstance(value, dict):
            if not value:
                raise ValueError("SWITCHBOARD_PROJECTS names no project")
            out: dict[str, object] = {}
            for name, project in value.items():
                if not isinstance(project, (dict, Project)):
                    raise ValueError(f"SWITCHBOARD_PROJECTS: project {name!r} is not a JSON object")
                if isinstance(project, dict):
                    if "name" in project and project["name"] != name:
                        raise ValueError(f"SWITCHBOARD_PROJECTS: project {name!r} says its name is another")
                    project = {**project, "name": name}
                out[name] = project
            return out
        if value is not None:
            raise ValueError("SWITCHBOARD_PROJECTS must be a JSON object of projects by name")
        return value

    @model_validator(mode="after")
    def _resolve_projects(self) -> Settings:
        """Every project, checked now: a bad configuration fails start-up, naming the problem
        (key ids and project names; never a secret)."""
        legacy_key, legacy_secret = self.livekit_api_key, self.livekit_api_secret.get_secret_value()
        if self.configured_projects is None:
            keys = {k: v.get_secret_value() for k, v in self.webhook_keys.items()}
            if legacy_key and legacy_secret:
                if keys.get(legacy_key, legacy_secret) != legacy_secret:
                    raise ValueError(f"LIVEKIT_API_KEY {legacy_key!r} is also in SWITCHBOARD_WEBHOOK_KEYS "
                                     "with another secret")
                keys[legacy_key] = legacy_secret
            if keys:
                project = Project(name=DEFAULT_PROJECT, url=self.livekit_url,
                                  keys={k: SecretStr(v) for k, v in keys.items()},
                                  dispatch_key=legacy_key if legacy_key in keys else next(iter(keys)))
                if legacy_key not in keys:
                    # Webhook keys only: it verifies, and calls LiveKit with no key (as before projects).
                    project = project.model_copy(update={"dispatch_key": ""})
            else:
                project = Project.model_construct(name=DEFAULT_PROJECT, url=self.livekit_url, keys={},
                                                  dispatch_key="", allowed_agents=None, routing_file=None)
            self._projects = {DEFAULT_PROJECT: project}
            return self
        if self.webhook_keys:
            raise ValueError("SWITCHBOARD_WEBHOOK_KEYS cannot be used with SWITCHBOARD_PROJECTS: "
                             "list each project's keys in its own \"keys\"")
        owner: dict[str, str] = {}
        for project in self.configured_projects.values():
            for key in project.keys:
                if key in owner:
                    raise ValueError(f"key {key!r} is in projects {owner[key]!r} and {project.name!r}: the key that "
                                     "signs a webhook selects its project, so a key may belong to one project only")
                owner[key] = project.name
        if legacy_key:
            # The workers still read LIVEKIT_API_KEY; beside SWITCHBOARD_PROJECTS it must agree with it.
            project_name = owner.get(legacy_key)
            if project_name is None:
                raise ValueError(f"LIVEKIT_API_KEY {legacy_key!r} is in no project of SWITCHBOARD_PROJECTS")
            if self.configured_projects[project_name].keys[legacy_key].get_secret_value() != legacy_secret:
                raise ValueError(f"LIVEKIT_API_SECRET differs from the secret of key {legacy_key!r} in project "
                                 f"{project_name!r}")
        self._projects = dict(self.configured_projects)
        return self

    @property
    def projects(self) -> dict[str, Project]:
        """Every project by name; one named "default" when only the LIVEKIT_* variables are set."""
        return self._projects

    def project(self, name: str | None = None) -> Project:
        """The project `name`; without one, the project named "default", or else the first one
        (what a caller that knows of one project only, such as `open_pipeline`, gets)."""
        if name is None:
            name = DEFAULT_PROJECT if DEFAULT_PROJECT in self._projects else next(iter(self._projects))
        try:
            return self._projects[name]
        except KeyError:
            raise KeyError(f"no project {name!r} (projects: {', '.join(sorted(self._projects))})") from None

    @cached_property
    def project_of_key(self) -> dict[str, str]:
        """Every accepted signing key → the project it selects."""
        return {key: p.name for p in self._projects.values() for key in p.keys}

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
        """Every api key → secret accepted on incoming webhooks, of every project."""
        return {k: v.get_secret_value() for p in self._projects.values() for k, v in p.keys.items()}

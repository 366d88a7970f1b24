"""One job's persona: the roster's role, with what the job metadata overrides.

Switchboard sends the rule's metadata merged with where and why it dispatched
(see handler/policy.py, PlannedDispatch.job_metadata). Metadata is written by
whoever creates the room, so it is validated, and metadata that fails
validation costs a logged error, never the job: the agent joins as the
roster's persona.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, ValidationError

from .roster import Role

log = logging.getLogger("switchboard.worker")

ROLE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Bounds keep a hostile room from making an agent talk for hours.
MAX_SCRIPT_LINES = 20
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Script = Annotated[list[Line], Field(max_length=MAX_SCRIPT_LINES)]


class JobMetadata(BaseModel):
    # Rule metadata is the room creator's free-form dict: keys we don't know are theirs.
    model_config = ConfigDict(extra="ignore", frozen=True)

    persona: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    instructions: Annotated[str, StringConstraints(min_length=1, max_length=4000)] | None = None
    voice: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{1,32}$")] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    speaks_first: StrictBool | None = None
    # This agent's lines, or every role's lines keyed by role name, so one script
    # can be copied into each agent's rule unchanged.
    script: Script | dict[Annotated[str, StringConstraints(pattern=ROLE_NAME_PATTERN)], Script] | None = None
    # The role this agent talks to; default: any other agent with a role.
    counterpart: Annotated[str, StringConstraints(pattern=ROLE_NAME_PATTERN)] | None = None

    # What Switchboard adds to every job: handler/wire.py's JOB_METADATA_KEYS (a test keeps them equal).
    room_name: str = ""
    room_sid: str = ""
    trigger: str = ""
    rule: str = ""
    switchboard_slot: str = ""
    participant_identity: str = ""


@dataclass(frozen=True)
class Persona:
    role: str
    name: str
    instructions: str
    voice: str
    temperature: float
    speaks_first: bool
    script: tuple[str, ...]
    counterpart: str | None = None
    switchboard_slot: str = ""

    @classmethod
    def from_role(cls, role: Role) -> Persona:
        return cls(role=role.name, name=role.persona, instructions=role.instructions, voice=role.voice,
                   temperature=role.temperature, speaks_first=role.speaks_first, script=role.script)


class MetadataInvalid(ValueError):
    """The message lists what is wrong, never the values: metadata is user content."""


def parse_job_metadata(raw: str) -> JobMetadata:
    """The metadata in `raw`; empty metadata (a dispatch from a token or the CLI) is no override."""
    if not raw.strip():
        return JobMetadata()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise MetadataInvalid("job metadata is not JSON") from None
    if not isinstance(data, dict):
        raise MetadataInvalid(f"job metadata is a JSON {type(data).__name__}, not an object")
    try:
        return JobMetadata.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                             for e in exc.errors(include_input=False, include_url=False))
        raise MetadataInvalid(problems[:1000]) from None


def apply_overrides(role: Role, metadata: JobMetadata) -> Persona:
    base = Persona.from_role(role)
    script = metadata.script
    if isinstance(script, dict):
        script = script.get(role.name)
    return Persona(
        role=role.name,
        name=metadata.persona or base.name,
        instructions=metadata.instructions or base.instructions,
        voice=metadata.voice or base.voice,
        temperature=base.temperature if metadata.temperature is None else metadata.temperature,
        speaks_first=base.speaks_first if metadata.speaks_first is None else metadata.speaks_first,
        script=tuple(script) if script is not None else base.script,
        counterpart=metadata.counterpart,
        switchboard_slot=metadata.switchboard_slot,
    )


def resolve_persona(role: Role, raw_metadata: str) -> Persona:
    """The persona for one job. Never raises: bad metadata is logged and the roster wins."""
    try:
        return apply_overrides(role, parse_job_metadata(raw_metadata))
    except MetadataInvalid as exc:
        log.error("job metadata is invalid; joining with the roster's persona",
                  extra={"role": role.name, "error": str(exc)})
        return Persona.from_role(role)

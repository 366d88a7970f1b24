"""The room-metadata contract: what a room creator writes to ask for agents.

    {"agents": [{"name": "dispatcher", "metadata": {"persona": "Tim"}}, {"name": "driver"}],
     "on_participant_joined": [{"name": "translator", "kinds": ["standard", "sip"],
                                "per": "participant", "metadata": {}}],
     "profile": "drill"}

Room metadata often carries the application's own data too, so unknown top-level
keys are ignored; inside a rule, unknown keys are errors, because a typo there
("metdata") would silently change what an agent receives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .settings import AGENT_NAME_PATTERN

# Metadata can ask for at most this many rules per list. The per-room cap is
# lower and applied later; this bound only keeps a hostile room from making us
# write thousands of REJECTED records.
MAX_RULES = 64

ParticipantKind = Literal["standard", "sip", "ingress", "egress", "connector", "bridge"]
CONTRACT_KEYS = frozenset({"agents", "on_participant_joined", "profile"})


class AgentRule(BaseModel):
    """One agent dispatched once per room session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=AGENT_NAME_PATTERN)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ParticipantRule(AgentRule):
    """An agent dispatched when a participant of one of `kinds` joins.

    per="participant": one dispatch for each participant identity.
    per="room": one dispatch per room session, on the first matching join.
    """

    # Agents are deliberately not a kind a rule can name: an agent's join
    # triggering a dispatch would loop.
    kinds: frozenset[ParticipantKind] = frozenset({"standard", "sip"})
    per: Literal["participant", "room"] = "participant"

    @field_validator("kinds", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        if isinstance(value, (list, tuple, set, frozenset)):
            return frozenset(str(v).lower() for v in value)
        return value


class AgentPlan(BaseModel):
    """The agent lists of a room, or of a routing profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: tuple[AgentRule, ...] = Field(default=(), max_length=MAX_RULES)
    on_participant_joined: tuple[ParticipantRule, ...] = Field(default=(), max_length=MAX_RULES)

    def merged_with(self, explicit: AgentPlan) -> AgentPlan:
        """This plan with `explicit`'s rules added; an explicit rule replaces one of the same name."""
        agents = {r.name: r for r in self.agents}
        agents.update({r.name: r for r in explicit.agents})
        joins = {r.name: r for r in self.on_participant_joined}
        joins.update({r.name: r for r in explicit.on_participant_joined})
        return AgentPlan(agents=tuple(agents.values()), on_participant_joined=tuple(joins.values()))


class RoomMetadata(AgentPlan):
    model_config = ConfigDict(extra="ignore", frozen=True)

    profile: str | None = Field(default=None, min_length=1, max_length=128)


class Routing(BaseModel):
    """The deployment's routing file: named profiles room creators can refer to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profiles: dict[str, AgentPlan] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> Routing:
        if path is None:
            return cls()
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return cls.model_validate(data)


class MetadataError(ValueError):
    """The room's metadata claims the contract but breaks it. The message is for the log."""


class MetadataNotJson(MetadataError):
    """The room's metadata is not JSON. It asks for no agents, but a typo in JSON meant
    for Switchboard looks exactly like that, so the parser's message is recorded."""


# Deeper metadata is refused on every Python alike: CPython 3.11's json stops near its
# recursion limit (~1000 levels), 3.13's parses 8000 and more (a C-stack limit). Agent
# settings need a handful of levels.
MAX_METADATA_DEPTH = 64


def _nested_deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:  # iterative: the point is not to recurse
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def parse_room_metadata(raw: str, *, max_bytes: int) -> RoomMetadata | None:
    """The contract in `raw`, or None when the metadata doesn't ask for agents at all.

    Absent and unrelated metadata (JSON without the contract's keys) mean "no
    agents": that is the room creator's choice. Metadata that is not JSON raises
    MetadataNotJson with the parser's message; metadata that uses the contract's
    keys but breaks it raises MetadataError with the validation message.
    """
    if not raw or not raw.strip():
        return None
    size = len(raw.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise MetadataError(f"room metadata is {size} bytes, over the {max_bytes}-byte limit")
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_int=_bounded_int)
    except RecursionError:
        raise MetadataError("room metadata is nested too deeply to parse") from None
    except MetadataError:
        raise
    except ValueError as exc:
        raise MetadataNotJson(str(exc)) from None
    if not isinstance(data, dict) or not CONTRACT_KEYS & data.keys():
        return None
    if _nested_deeper_than(data, MAX_METADATA_DEPTH):
        raise MetadataError(f"room metadata is nested too deeply (over {MAX_METADATA_DEPTH} levels)")
    try:
        return RoomMetadata.model_validate(data)
    except ValidationError as exc:
        raise MetadataError(_short(exc)) from None
    except RecursionError:
        raise MetadataError("room metadata is nested too deeply to validate") from None


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; no other JSON parser (an agent's) will.
    raise MetadataError(f"room metadata holds {name}, which is not JSON")


def _bounded_int(text: str) -> int:
    # Past Python's 4300-digit limit int() raises a ValueError that would read as "not JSON".
    if len(text.lstrip("-")) > 64:
        raise MetadataError(f"room metadata holds a {len(text.lstrip('-'))}-digit number; at most 64 digits")
    return int(text)


def _short(exc: ValidationError) -> str:
    # pydantic's own message, minus the documentation URLs it appends to each error.
    lines = [line for line in str(exc).splitlines() if "errors.pydantic.dev" not in line]
    text = "\n".join(lines)
    return text if len(text) <= 2000 else text[:2000] + " …"

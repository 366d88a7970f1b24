"""The roles a worker can serve: one agent name each, with its default persona.

This is the only place roles are defined. A worker process serves exactly one
of them; job metadata may override the persona fields of a single job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Role:
    name: str  # the agent name LiveKit dispatches, and the participant identity
    persona: str  # the display name participants see
    instructions: str
    voice: str  # an OpenAI realtime voice; local mode maps it to an espeak-ng voice
    temperature: float
    speaks_first: bool = False
    # Local mode's lines when the job metadata brings no script.
    script: tuple[str, ...] = ()


ROSTER: Mapping[str, Role] = MappingProxyType({role.name: role for role in (
    Role(
        name="dispatcher",
        persona="Tim",
        instructions=(
            "You are Tim, a calm and concise fleet dispatcher on a radio channel. "
            "Open the call, give the driver one clear instruction at a time, confirm "
            "what they read back, and end each transmission with 'over'."),
        voice="alloy",
        temperature=0.8,
        speaks_first=True,
        script=(
            "Driver, this is dispatch. Do you copy? Over.",
            "Good. Pick up at the north depot, then head to gate four. Over.",
        ),
    ),
    Role(
        name="driver",
        persona="Chris",
        instructions=(
            "You are Chris, a delivery driver on a radio channel with dispatch. "
            "Answer briefly, read instructions back to confirm them, mention anything "
            "that blocks you, and end each transmission with 'over'."),
        voice="echo",
        temperature=0.7,
        script=(
            "Copy, dispatch. Chris here, loud and clear. Over.",
            "North depot, then gate four. On my way. Over.",
        ),
    ),
)})


class UnknownRole(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown role {name!r}; the roster has {', '.join(sorted(ROSTER))}")


def get_role(name: str) -> Role:
    try:
        return ROSTER[name]
    except KeyError:
        raise UnknownRole(name) from None

"""Which LiveKit webhook events can change a decision, by their type alone, and why.

The one table of it. An event whose type cannot matter is answered at once and
counted (the `InertEvents` metric), with no DynamoDB call and no record: LiveKit
sends far more track, egress and ingress events than room and participant
events, and no review question needs them. livekit-server can leave them out at
the source (`webhook.filter_params.include_events`, infra/livekit.yaml); this table
is what holds where it cannot (LiveKit Cloud, or a server configured without it).

A type not in the table matters: a type LiveKit adds later is recorded, as every
event was before, until someone reads what it means and writes its line here.
"""

from __future__ import annotations

from enum import StrEnum


class Relevance(StrEnum):
    MATTERS = "matters"            # decided, acted on, recorded
    CANNOT_MATTER = "cannot_matter"  # answered at once, counted, not recorded


# The event names are livekit-server's (protocol/webhook/consts.go, v1.13.5).
EVENT_TYPES: dict[str, tuple[Relevance, str]] = {
    "room_started": (Relevance.MATTERS, "opens a room session: its metadata names the room's agents"),
    "room_finished": (Relevance.MATTERS, "closes the session: its open slots end"),
    "participant_joined": (Relevance.MATTERS, "a person may set off a participant rule (and the room's agents, "
                           "if room_started was lost); an agent's join confirms its dispatch"),
    "participant_left": (Relevance.MATTERS, "an agent's leave ends or replaces its slot; a person's is kept "
                         "on the room's timeline"),
    "participant_connection_aborted": (Relevance.MATTERS, "LiveKit's participant_left for one that never finished "
                                       "connecting: for an agent it matters as much (LiveKit ends its job)"),
    "track_published": (Relevance.CANNOT_MATTER, "the policy reads room metadata and participants, never tracks"),
    "track_unpublished": (Relevance.CANNOT_MATTER, "the policy reads room metadata and participants, never tracks"),
    "egress_started": (Relevance.CANNOT_MATTER, "a recording or stream out of the room; no rule reads egress"),
    "egress_updated": (Relevance.CANNOT_MATTER, "a recording or stream out of the room; no rule reads egress"),
    "egress_ended": (Relevance.CANNOT_MATTER, "a recording or stream out of the room; no rule reads egress"),
    "ingress_started": (Relevance.CANNOT_MATTER, "the ingress's own lifecycle: the participant it publishes as "
                        "arrives as participant_joined (kind ingress), which is what a rule reads"),
    "ingress_ended": (Relevance.CANNOT_MATTER, "the ingress's own lifecycle: its participant's leave arrives as "
                      "participant_left"),
}

# What livekit-server's webhook filter should let through (infra/livekit.yaml, the README).
MATTERING_EVENTS = tuple(name for name, (relevance, _) in EVENT_TYPES.items() if relevance is Relevance.MATTERS)


def relevance(event_type: str) -> tuple[Relevance, str]:
    """(whether an event of this type can change a decision, why), from the type alone."""
    return EVENT_TYPES.get(event_type, (Relevance.MATTERS, "a type this table does not know yet: recorded"))

"""The records the dispatch log holds, typed: a slot (one agent a room session needs) and a received event.

Built only by the store's translator (codec.slot_record, codec.event_record) from the items it
reads, so the rest of the handler reads attributes, never an item's keys. Each field is the
attribute of the same name (table.py's layout); a field the item lacks has its default: "" for
text, None where an absent value means something other than an empty one (the CLI prints those
as ""). Numbers are as stored: int, or float where the item holds a fraction.
`stored` keeps every attribute as read, for what shows them all (the page's JSON, and its
fingerprint of what changed): display, not decisions. The review reads the typed fields too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .outcomes import Source
from .policy import PlannedDispatch, Rule
from .wire import JOB_METADATA_KEYS


class Status(StrEnum):
    """Where a slot is in the state machine (claims.py draws it)."""

    CLAIMED = "CLAIMED"
    DISPATCHED = "DISPATCHED"
    JOINED = "JOINED"
    ENDED = "ENDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"


# A slot in one of these states already has (or had) its agent.
DONE = frozenset({Status.DISPATCHED, Status.JOINED, Status.ENDED})
# Slots that room_finished closes.
OPEN = frozenset({Status.CLAIMED, Status.DISPATCHED, Status.JOINED})


@dataclass(frozen=True)
class SlotRecord:
    """A dispatch record: the slot's place in the state machine (claims.py) and its history."""

    pk: str
    sk: str  # the slot's key (table.dispatch_sk): which of the room's slots this is
    status: Status
    room_sid: str = ""
    room_name: str = ""
    agent_name: str = ""
    rule: Rule = Rule.AGENTS
    trigger: str = ""
    participant_identity: str = ""
    triggered_by: str = ""
    # The participant presence a participant rule's slot was (re)opened for, and when it joined (LiveKit's ms).
    presence_sid: str = ""
    presence_joined_ms: int = 0
    event_id: str = ""
    project: str = ""
    # The claim: its owner, how many attempts it has used, which opening of the slot this is.
    owner: str = ""
    attempts: int = 0
    generation: int | None = None
    lease_expires_at: float = 0
    job_metadata: str = ""
    dispatch_id: str = ""
    # The agent that joined: its identity, and the sid it joined with (None on records older than it).
    agent_identity: str = ""
    agent_sid: str | None = None
    retryable: bool = False
    error: str = ""
    reason: str = ""
    redispatch_reason: str = ""
    replacing: str = ""
    # When the sweeper first found the JOINED slot's agent absent from its room (our clock, s).
    missing_since: float | None = None
    # When what a settle rested on was read (ms): a presence that joined after it opens the slot again.
    settled_as_of_ms: int = 0
    orphans: list[dict[str, Any]] | None = None
    created_at: str = ""
    updated_at: str = ""
    claimed_at: str = ""
    dispatched_at: str = ""
    joined_at: str = ""
    ended_at: str = ""
    failed_at: str = ""
    rejected_at: str = ""
    stored: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def slot(self) -> str:
        return self.sk

    @property
    def is_open(self) -> bool:
        """Not settled: the slot has, or may still get, an agent in its room."""
        return self.status in OPEN or self.retryable_failure

    @property
    def retryable_failure(self) -> bool:
        """FAILED, with attempts left: the next delivery or sweep dispatches it again."""
        return self.status == Status.FAILED and self.retryable

    @property
    def being_claimed(self) -> bool:
        """CLAIMED, or a retryable failure: its owner (or the next) may yet adopt a dispatch it
        made, so a dispatch carrying the slot is not to be deleted from under it."""
        return self.status == Status.CLAIMED or self.retryable_failure

    @property
    def settled_at(self) -> str:
        """When the slot settled (ENDED, FAILED or REJECTED); "" while it is open."""
        return self.ended_at or self.failed_at or self.rejected_at

    def planned_again(self, *, trigger: str) -> PlannedDispatch:
        """The PlannedDispatch behind this slot, to dispatch it again.

        Its rule metadata is the job metadata less what PlannedDispatch.job_metadata added (JOB_METADATA_KEYS).
        """
        try:
            job = json.loads(self.job_metadata or "{}")
        except ValueError:
            job = {}
        return PlannedDispatch(
            room_sid=self.room_sid, room_name=self.room_name, agent_name=self.agent_name, rule=self.rule,
            trigger=trigger, participant_identity=self.participant_identity, triggered_by=self.triggered_by,
            rule_metadata={k: v for k, v in job.items() if k not in JOB_METADATA_KEYS} if isinstance(job, dict) else {})


@dataclass(frozen=True)
class EventRecord:
    """One received webhook (one per event id, however many deliveries): what was decided and answered.

    What the pipeline writes (record_event) is the event and its answer (codec.event_fields); the
    store adds when it was received, answered and how often delivered, which come back on a read.
    """

    pk: str
    sk: str
    event_id: str
    event_type: str
    room_name: str = ""
    room_sid: str = ""
    participant_identity: str = ""
    participant_kind: str = ""
    event_created_at: int = 0
    decision: Mapping[str, Any] = field(default_factory=dict)
    outcome: Mapping[str, Any] = field(default_factory=dict)
    # Delivered by LiveKit, or rebuilt by the sweeper from LiveKit's state.
    source: Source = Source.WEBHOOK
    project: str = ""
    # As stored: the first delivery's time, the latest's, the 200's, and the number of deliveries.
    created_at: str = ""
    last_received_at: str = ""
    answered_at: str = ""
    deliveries: int = 0
    stored: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


# What the log's queries return: a slot's record, or an event's.
LogRecord = SlotRecord | EventRecord

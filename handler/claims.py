"""Exactly-once dispatch: the slot state machine and the persistence interface.

Modelled on AWS Lambda Powertools' idempotency utility. Every agent a room needs
has one slot (table.dispatch_sk). Before anyone calls CreateDispatch, it must claim
the slot with a conditional write:

                claim                CreateDispatch ok              agent joins
   (no slot) ────────▶ CLAIMED ─────────────────────▶ DISPATCHED ─────────────▶ JOINED
        ▲               │   ▲                              │                       │
        │               │   └─ taken over (back to CLAIMED) when: the lease        │
        │               │      expired, a retryable failure is re-delivered, the   │
        │               │      agent never joined (sweeper), or it left without    │
        │               │      meaning to while the room still wants it ◀──────────┘
        │               ▼
        │             FAILED  final when LiveKit said no or the attempts are used up
        │
        └── a participant rule's settled slot (ENDED, FAILED, REJECTED) is claimed again,
            as a new generation, by a participant who joined after it settled.

    The room session ending (room_finished, or the sweeper finding it gone) ends every
    slot not yet settled, a retryable failure included: ENDED. A JOINED slot also ends
    when its agent leaves as intended, or leaves a room that no longer wants it (see
    presence.Presence.replace_agent). REJECTED: the policy refused the slot (allowlist,
    cap); never claimed.

A CLAIMED slot holds a lease. While it runs, other deliveries of the same event
(another process, a LiveKit retry) get ClaimInProgress and answer 503, so
LiveKit re-delivers later; once it expires, the next delivery takes the slot
over. Only the owner of a claim may move it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .policy import PlannedDispatch

# The slot's states live with its record (records.py); they are imported from here too.
from .records import DONE as DONE
from .records import OPEN as OPEN
from .records import EventRecord, LogRecord, SlotRecord
from .records import Status as Status

# Every field a dispatch record carries, in the order `switchboard logs --json` prints them.
RECORD_FIELDS = (
    "room_name", "room_sid", "agent_name", "status", "dispatch_id", "trigger", "rule",
    "participant_identity", "triggered_by", "presence_sid", "agent_identity", "agent_sid", "event_id",
    "attempts", "generation", "created_at", "updated_at", "claimed_at", "dispatched_at", "joined_at", "ended_at",
    "failed_at", "rejected_at", "error", "reason", "redispatch_reason", "replacing", "missing_since", "orphans",
    "job_metadata",
)


@dataclass(frozen=True)
class Claim:
    """A slot this process now owns."""

    planned: PlannedDispatch
    owner: str
    attempt: int
    # The slot existed before (an expired lease or a retryable failure): an
    # earlier attempt may have reached LiveKit, so look before creating again.
    takeover: bool
    previous_dispatch_id: str = ""
    # The attempts are used up and the last one died mid-claim (its lease ran out): this
    # claim may only adopt what that attempt created, never create again.
    last_chance: bool = False
    # A dispatch an owner before us took the slot over to replace: it is deleted, never adopted.
    replacing: str = ""


class ClaimError(Exception):
    """The slot cannot be claimed; `record` is what the table holds (None: nothing, or not read)."""

    def __init__(self, slot: str, record: SlotRecord | None = None, detail: str = "") -> None:
        self.slot = slot
        self.record = record
        super().__init__(detail or f"{type(self).__name__}: {slot}")


class SlotAlreadyDispatched(ClaimError):
    """The slot is DISPATCHED, JOINED or ENDED: this delivery is a duplicate."""


class ClaimInProgress(ClaimError):
    """Someone else holds a live lease on the slot; retrying later helps."""


class SlotClosed(ClaimError):
    """REJECTED, or FAILED with no attempts left: the slot will not be dispatched."""


class RoomCapReached(ClaimError):
    """The room session already has its cap of open (not yet settled) slots."""


class LeaseLost(ClaimError):
    """A claim's owner tried to move the slot on after someone else took it over."""


class StoreUnavailable(Exception):
    """The dispatch log can't be reached or refused the call; a retry may help."""


class DispatchStore(Protocol):
    """Where claims, dispatch records and received events live."""

    async def load_slots(self, room_sid: str) -> dict[str, SlotRecord]:
        """Every slot of a room session, by slot key, read consistently."""
        ...

    async def claim(self, planned: PlannedDispatch, event_id: str, existing: SlotRecord | None,
                    *, redispatch: str | None = None) -> Claim: ...

    async def mark_dispatched(self, claim: Claim, dispatch_id: str, *, adopted: bool = False) -> None: ...

    async def mark_failed(self, claim: Claim, error: str, *, retryable: bool) -> None: ...

    async def record_rejection(self, planned: PlannedDispatch, event_id: str, reason: str) -> bool:
        """Record a REJECTED slot; False if the slot already had a record."""
        ...

    async def mark_joined(self, room_sid: str, slot: str, agent_identity: str, dispatch_id: str,
                          agent_sid: str = "") -> bool:
        """JOINED, only while the slot is DISPATCHED to `dispatch_id`."""
        ...

    async def end_room(self, room_sid: str, reason: str = ...) -> int: ...

    async def note_orphan(self, record: SlotRecord, dispatch_id: str, why: str) -> None:
        """Write on the slot that a dispatch carrying it, not its own, was deleted."""
        ...

    async def note_removal(self, room_sid: str, identity: str, sid: str) -> None:
        """Before RemoveParticipant (which takes an identity): the session under it meant."""
        ...

    async def removal_aimed_at(self, room_sid: str, identity: str) -> str | None:
        """The sid the sweeper lately meant to remove under `identity`, if any."""
        ...

    async def record_event(self, event: EventRecord, *, received_at: float, answered: bool) -> None: ...

    async def replay_event(self, pk: str, sk: str) -> EventRecord | None:
        """The event's record if its first handling was answered 200 (the delivery is counted); else None."""
        ...

    async def pending(self, days: int = 2) -> list[SlotRecord]:
        """Every slot not yet settled: the sweeper's work list."""
        ...

    async def settle(self, record: SlotRecord, status: Status, reason: str, *,
                     as_of: float | None = None) -> bool:
        """Close an unsettled slot as FAILED or ENDED; False if it moved on since `record`."""
        ...

    async def mark_missing(self, record: SlotRecord, seen_missing: bool) -> SlotRecord | None:
        """Note (or clear) when a JOINED slot's agent was first found absent from its room."""
        ...

    async def query_log(self, *, room: str | None = None, agent: str | None = None,
                        status: str | None = None, since: float, record_type: str = "dispatch",
                        limit: int = 1000) -> list[LogRecord]:
        """Dispatch (or event) records newest first: the sweeper asks it whether a worker joined lately."""
        ...

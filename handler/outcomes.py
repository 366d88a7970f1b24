"""What became of one slot in one delivery, and where an event came from: the pipeline's answers.

StrEnums, so the webhook's answer, the event record and the log lines read as they always did
("dispatched", "webhook").
"""

from __future__ import annotations

from enum import StrEnum


class SlotOutcome(StrEnum):
    """SlotResult.result: what one delivery did with one slot."""

    DISPATCHED = "dispatched"  # claimed, CreateDispatch made, DISPATCHED
    REDISPATCHED = "redispatched"  # its dispatch replaced (the agent never came, or left)
    ADOPTED = "adopted"  # a takeover found the dispatch an earlier attempt made, and kept it
    DUPLICATE = "duplicate"  # the slot was already as this delivery wanted it
    IN_PROGRESS = "in_progress"  # another delivery holds the claim's lease: retry later
    CLOSED = "closed"  # REJECTED, or FAILED with no attempts left
    REJECTED = "rejected"  # the policy (allowlist) or the room's cap refused it
    FAILED = "failed"  # LiveKit refused or failed the dispatch, or the attempts are spent
    LEASE_LOST = "lease_lost"  # the claim was taken over before this delivery finished
    JOINED = "joined"  # an agent's join confirmed its dispatch
    UNCONFIRMED = "unconfirmed"  # which dispatch an agent is could not be told (yet)
    STALE = "stale"  # a departure of an agent that is in the room now
    ENDED = "ended"  # the slot's agent left as intended, or the room no longer wants it


class Source(StrEnum):
    """Where an event the pipeline handles came from."""

    WEBHOOK = "webhook"  # delivered by LiveKit: replayed if already answered, recorded
    # Rebuilt by the sweeper from LiveKit's state: never replayed; recorded only if it changed something.
    SWEEP = "sweep"


class SweepAction(StrEnum):
    """What one sweep did with a slot (SweepReport.actions, the SweepActions metric's `action`)."""

    CLAIM_IN_PROGRESS = "claim_in_progress"  # its owner's lease is still running: left alone
    BACKING_OFF = "backing_off"  # FAILED, retryable, waiting out its back-off
    AWAITING_JOIN = "awaiting_join"  # DISPATCHED, its agent still has time to join
    ROOM_GONE = "room_gone"  # its room session is over: the session's slots ENDED
    JOINED = "joined"  # its agent is in the room; the join webhook was missed
    AGENT_CONNECTING = "agent_connecting"  # its agent is in the room, not yet active, within the grace
    FAILED = "failed"  # no agent, and the attempts are spent
    ORPHAN_DELETED = "orphan_deleted"  # a dispatch that is not its slot's current one, deleted
    STUCK_AGENT_REMOVED = "stuck_agent_removed"  # a never-active session whose slot moved on, removed
    AGENT_MISSING = "agent_missing"  # a JOINED slot's agent not in the room, within the grace
    # Prefixes, joined to what became of the slot (a SlotOutcome): "reconciled_dispatched".
    RECONCILED = "reconciled"  # a live room's metadata or people, replayed through the pipeline
    MISSING_AGENT = "missing_agent"  # a JOINED slot's agent missing past the grace, replaced or ended

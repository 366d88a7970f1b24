"""A room's records as the steps that happened, oldest first.

The dispatch log keeps one record per received webhook (with the policy's decision
and what came of it) and one per slot (with the time of each step it reached).
Both the CLI's `explain` and the page draw from the steps built here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..claims import Status
from ..records import EventRecord, LogRecord, SlotRecord

# The order a slot's steps happen in, to break ties between steps of the same millisecond.
STEP_FIELDS = (("CLAIMED", "claimed_at"), ("REJECTED", "rejected_at"), ("DISPATCHED", "dispatched_at"),
               ("FAILED", "failed_at"), ("JOINED", "joined_at"), ("ENDED", "ended_at"))
_RANK = {status: i + 1 for i, (status, _) in enumerate(STEP_FIELDS)}

# What an event's outcome says happened to a slot, when it was dispatched again.
REDISPATCH_RESULTS = frozenset({"redispatched"})


def clock(at: str) -> str:
    """The time of day of a stored timestamp, to the millisecond: 11:45:17.336."""
    return at[11:23] if len(at) >= 23 else at


def label(agent_name: str, participant_identity: str = "") -> str:
    """How a slot is named to a reader: its agent, and whom it is for (a participant rule's)."""
    return agent_name + (f" for {participant_identity}" if participant_identity else "")


def slot_label(record: SlotRecord) -> str:
    return label(record.agent_name, record.participant_identity)


def _event_step(r: EventRecord) -> dict[str, Any]:
    decision, outcome = dict(r.decision), dict(r.outcome)
    detail = decision.get("reason", "")
    if decision.get("error"):
        detail += f": {decision['error']}"
    results = Counter(slot["result"] for slot in outcome.get("slots", []))
    if results:
        detail += " → " + ", ".join(f"{n} {result}" for result, n in sorted(results.items()))
    if outcome.get("note"):
        detail += f" → {outcome['note']}"
    who, event_type = r.participant_identity, r.event_type
    # Only join and leave events carry a meaningful participant kind.
    kind = f"{r.participant_kind} " if event_type.startswith("participant_") else ""
    what = event_type + (f" ({kind}{who})" if who else "")
    if r.source == "sweep":
        what = f"sweep: {what}"
    deliveries = r.deliveries or 1  # (every stored event counts its deliveries; a record built bare, one)
    if deliveries > 1:
        what += f" ×{deliveries}"
    return {"at": r.created_at, "room_sid": r.room_sid, "what": what, "detail": detail,
            "kind": "event", "event_type": event_type, "event_id": r.event_id,
            "source": r.source.value, "deliveries": deliveries,
            "decision": decision, "outcome": outcome, "_rank": 0}


def _dispatch_steps(r: SlotRecord) -> list[dict[str, Any]]:
    agent = slot_label(r)
    steps = []
    for status, field in STEP_FIELDS:
        at: str = getattr(r, field)
        if not at:
            continue
        detail = {"DISPATCHED": r.dispatch_id, "FAILED": r.error, "REJECTED": r.reason, "JOINED": r.agent_identity,
                  "ENDED": r.reason if r.status == Status.ENDED else "",
                  "CLAIMED": f"attempt {r.attempts or 1}, trigger {r.trigger}"
                  + (f", re-dispatched: {r.redispatch_reason}" if r.redispatch_reason else ""),
                  }.get(status, "")
        steps.append({"at": at, "room_sid": r.room_sid, "what": f"{agent} {status}",
                      "detail": detail, "kind": "dispatch", "slot": r.sk, "agent": agent,
                      "status": status, "_rank": _RANK[status]})
    return steps


def timeline(records: list[LogRecord]) -> list[dict[str, Any]]:
    """A room's history as steps (at, room_sid, what, detail, ...), oldest first.

    An event is received before anything it causes, so at the same millisecond
    it comes first, and a slot's own steps keep their natural order.
    """
    steps: list[dict[str, Any]] = []
    for r in records:
        if isinstance(r, EventRecord):
            steps.append(_event_step(r))
        else:
            steps.extend(_dispatch_steps(r))
    steps.sort(key=lambda s: (s["at"], s["_rank"]))
    for s in steps:
        del s["_rank"]
    return steps


def sessions(records: list[LogRecord]) -> list[dict[str, Any]]:
    """A room name's sessions (one per room sid), oldest first, each with its slots (SlotRecords) and steps."""
    by_sid: dict[str, list[LogRecord]] = {}
    for r in records:
        by_sid.setdefault(r.room_sid, []).append(r)
    out = []
    for sid, rs in by_sid.items():
        steps = timeline(rs)
        slots = sorted((r for r in rs if isinstance(r, SlotRecord)), key=lambda r: r.created_at)
        out.append({"room_sid": sid, "started": steps[0]["at"] if steps else "", "steps": steps, "slots": slots,
                    "redispatches": redispatches(steps)})
    return sorted(out, key=lambda s: s["started"])


def redispatches(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event that dispatched a slot again: which step, which slot, the new dispatch id."""
    out = []
    for index, step in enumerate(steps):
        for slot in (step.get("outcome") or {}).get("slots", []):
            if slot.get("result") in REDISPATCH_RESULTS:
                out.append({"step": index, "slot": slot.get("slot", ""), "dispatch_id": slot.get("detail", "")})
    return out

"""A room's records as the steps that happened, oldest first.

The dispatch log keeps one record per received webhook (with the policy's decision
and what came of it) and one per slot (with the time of each step it reached).
Both the CLI's `explain` and the page draw from the steps built here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..claims import Status

# The order a slot's steps happen in, to break ties between steps of the same millisecond.
STEP_FIELDS = (("CLAIMED", "claimed_at"), ("REJECTED", "rejected_at"), ("DISPATCHED", "dispatched_at"),
               ("FAILED", "failed_at"), ("JOINED", "joined_at"), ("ENDED", "ended_at"))
_RANK = {status: i + 1 for i, (status, _) in enumerate(STEP_FIELDS)}

# What an event's outcome says happened to a slot, when it was dispatched again.
REDISPATCH_RESULTS = frozenset({"redispatched"})


def clock(at: str) -> str:
    """The time of day of a stored timestamp, to the millisecond: 11:45:17.336."""
    return at[11:23] if len(at) >= 23 else at


def slot_label(record: dict[str, Any]) -> str:
    who = record.get("participant_identity")
    agent: str = record.get("agent_name", "")
    return agent + (f" for {who}" if who else "")


def _event_step(r: dict[str, Any]) -> dict[str, Any]:
    decision, outcome = r.get("decision", {}) or {}, r.get("outcome", {}) or {}
    detail = decision.get("reason", "")
    if decision.get("error"):
        detail += f": {decision['error']}"
    results = Counter(slot["result"] for slot in outcome.get("slots", []))
    if results:
        detail += " → " + ", ".join(f"{n} {result}" for result, n in sorted(results.items()))
    if outcome.get("note"):
        detail += f" → {outcome['note']}"
    who = r.get("participant_identity")
    event_type = r.get("event_type", "")
    # Only join and leave events carry a meaningful participant kind.
    kind = f"{r.get('participant_kind')} " if event_type.startswith("participant_") else ""
    what = event_type + (f" ({kind}{who})" if who else "")
    if r.get("source") == "sweep":
        what = f"sweep: {what}"
    deliveries = r.get("deliveries", 1)
    if deliveries > 1:
        what += f" ×{deliveries}"
    return {"at": r.get("created_at", ""), "room_sid": r.get("room_sid", ""), "what": what, "detail": detail,
            "kind": "event", "event_type": event_type, "event_id": r.get("event_id", ""),
            "source": r.get("source", "webhook"), "deliveries": deliveries,
            "decision": decision, "outcome": outcome, "_rank": 0}


def _dispatch_steps(r: dict[str, Any]) -> list[dict[str, Any]]:
    agent = slot_label(r)
    steps = []
    for status, field in STEP_FIELDS:
        if not r.get(field):
            continue
        detail = {"DISPATCHED": r.get("dispatch_id", ""), "FAILED": r.get("error", ""),
                  "REJECTED": r.get("reason", ""), "JOINED": r.get("agent_identity", ""),
                  "ENDED": r.get("reason", "") if r.get("status") == Status.ENDED else "",
                  "CLAIMED": f"attempt {r.get('attempts', 1)}, trigger {r.get('trigger', '')}"
                  + (f", re-dispatched: {r['redispatch_reason']}" if r.get("redispatch_reason") else ""),
                  }.get(status, "")
        steps.append({"at": r[field], "room_sid": r.get("room_sid", ""), "what": f"{agent} {status}",
                      "detail": detail, "kind": "dispatch", "slot": r.get("sk", ""), "agent": agent,
                      "status": status, "_rank": _RANK[status]})
    return steps


def timeline(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A room's history as steps (at, room_sid, what, detail, ...), oldest first.

    An event is received before anything it causes, so at the same millisecond
    it comes first, and a slot's own steps keep their natural order.
    """
    steps: list[dict[str, Any]] = []
    for r in records:
        if r.get("record_type") == "event":
            steps.append(_event_step(r))
        elif r.get("record_type") == "dispatch":
            steps.extend(_dispatch_steps(r))
    steps.sort(key=lambda s: (s["at"], s["_rank"]))
    for s in steps:
        del s["_rank"]
    return steps


def sessions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A room name's sessions (one per room sid), oldest first, each with its slots and steps."""
    by_sid: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("record_type") in ("event", "dispatch"):
            by_sid.setdefault(r.get("room_sid", ""), []).append(r)
    out = []
    for sid, rs in by_sid.items():
        steps = timeline(rs)
        slots = sorted((r for r in rs if r.get("record_type") == "dispatch"), key=lambda r: r.get("created_at", ""))
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

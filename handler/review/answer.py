"""`switchboard explain --room X --agent A`: why agent A is, or is not, in room X, in one paragraph."""

from __future__ import annotations

from ..claims import Status
from ..records import EventRecord, LogRecord, SlotRecord
from ..timestamps import epoch
from .timeline import clock, slot_label


def _ms_between(start: str, end: str) -> int | None:
    try:
        return round((epoch(end) - epoch(start)) * 1000) if start and end else None
    except ValueError:
        return None


def _at(at: str) -> str:
    return f"{at[:10]} {clock(at)} UTC" if at else "an unrecorded time"


def _slot_sentence(r: SlotRecord, max_attempts: int) -> str:
    name, status, attempts = slot_label(r), r.status, r.attempts
    via = f"trigger {r.trigger}" if r.trigger else "an unknown trigger"
    again = (f" It was dispatched {attempts} times; the last re-dispatch because {r.redispatch_reason}."
             if attempts > 1 and r.redispatch_reason else
             (f" It took {attempts} attempts." if attempts > 1 else ""))
    if status == Status.JOINED:
        took = _ms_between(r.dispatched_at, r.joined_at)
        return (f"{name} is in the room: dispatched at {_at(r.dispatched_at)} ({via}, dispatch "
                f"{r.dispatch_id or '?'}), it joined as {r.agent_identity or '?'} at "
                f"{clock(r.joined_at)}" + (f", {took} ms later." if took is not None else ".") + again)
    if status == Status.DISPATCHED:
        return (f"{name} is not in the room yet: LiveKit accepted dispatch {r.dispatch_id or '?'} at "
                f"{_at(r.dispatched_at)} ({via}), and no agent has joined for it since; the sweeper "
                f"dispatches it again if none joins in time (attempt {attempts} of {max_attempts}).{again}")
    if status == Status.CLAIMED:
        return (f"{name} is not in the room yet: a delivery claimed its slot at {_at(r.claimed_at)} "
                f"(attempt {attempts} of {max_attempts}, {via}) and has not recorded LiveKit's answer; if it died, "
                f"the next delivery or the sweeper takes the claim over when its lease runs out.{again}")
    if status == Status.FAILED:
        final = "for good" if not r.retryable else "for now (the sweeper will try again)"
        return (f"{name} is not in the room: its dispatch failed {final} at {_at(r.failed_at)} after "
                f"{attempts} attempt(s): {r.error or 'no error text recorded'}.")
    if status == Status.REJECTED:
        return f"{name} is not in the room: the policy rejected it at {_at(r.rejected_at)} ({via}): {r.reason}."
    why = r.reason or "its room finished"  # ENDED
    joined = f"it joined as {r.agent_identity} at {clock(r.joined_at)}, " if r.joined_at else ""
    return f"{name} is not in the room any more: {joined}and its slot ended at {_at(r.ended_at)}: {why}."


def _decisions(records: list[LogRecord]) -> list[str]:
    """What the policy said about the room's own events, oldest first, without repeats."""
    out: list[str] = []
    for r in sorted(records, key=lambda r: r.created_at):
        if not isinstance(r, EventRecord) or r.event_type not in ("room_started", "participant_joined"):
            continue
        if r.participant_kind == "agent":
            continue
        d = r.decision
        said = d.get("reason", "") + (f" ({d['error']})" if d.get("error") else "")
        if d.get("planned"):
            said += " (" + ", ".join(p.removeprefix("DISPATCH#").replace("#", " for ") for p in d["planned"]) + ")"
        line = f"{r.event_type} at {clock(r.created_at)} was decided: {said}"
        if said and not any(line.split(" was decided: ")[1] == o.split(" was decided: ")[1] for o in out):
            out.append(line)
    return out


def explain_agent(room: str, agent: str, records: list[LogRecord], *, max_attempts: int) -> str:
    """One paragraph: the agent's slots in the room's latest session, or why it has none."""
    if not records:
        return (f"Switchboard has no record of room {room!r} in this window: no webhook of it reached Switchboard "
                f"(check LiveKit's webhook.urls and signing key) or it is older than --since.")
    latest = max(records, key=lambda r: r.created_at).room_sid
    session = [r for r in records if r.room_sid == latest]
    sessions = len({r.room_sid for r in records})
    opening = f"In room {room} (session {latest}" + (f", the latest of {sessions}" if sessions > 1 else "") + "), "
    slots = [r for r in session if isinstance(r, SlotRecord) and r.agent_name == agent]
    if slots:
        sentences = [_slot_sentence(r, max_attempts) for r in sorted(slots, key=lambda r: r.created_at)]
        return opening + " ".join(s[0].lower() + s[1:] if i == 0 else s for i, s in enumerate(sentences))
    others = sorted({slot_label(r) for r in session if isinstance(r, SlotRecord)})
    decided = _decisions(session)
    text = opening + f"{agent} is not in the room: Switchboard never dispatched it, because no decision asked for it."
    if decided:
        text += " The policy's decisions: " + "; ".join(decided[:4]) + "."
    else:
        text += " No room_started or participant_joined of a person was recorded for this session."
    if others:
        text += " It did dispatch " + ", ".join(others) + "."
    return text

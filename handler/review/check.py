"""`switchboard check` and `switchboard schema`: the policy's dry run and the contract as JSON Schema.

A backend developer asks "what would this metadata dispatch?" before creating a
room. The answer comes from the same decide() the webhook runs, on events built
here, with the deployment's settings (allowlist, cap) and routing file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from ..contract import RoomMetadata, Routing
from ..policy import Action, Decision, decide
from ..settings import Settings

# A room's sid is LiveKit's to give; the dry run shows where it goes in the job metadata.
DRY_RUN_SID = "RM_dry_run"
# The stubs type an enum wrapper's values as plain ints; they are the Kind's.
KINDS = {name.lower(): cast(ParticipantInfo.Kind, value) for name, value in ParticipantInfo.Kind.items()}


@dataclass(frozen=True)
class CheckResult:
    events: list[tuple[str, Decision]]

    @property
    def contract_error(self) -> str | None:
        """The first event's error: broken metadata breaks every event of the room alike."""
        return next((d.error for _, d in self.events if d.error), None)

    @property
    def rejected(self) -> bool:
        return any(d.rejected for _, d in self.events)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.contract_error is None, "error": self.contract_error, "events": [
            {"event": what, "action": str(d.action), "reason": d.reason, "error": d.error,
             "dispatch": [{"agent_name": p.agent_name, "slot": p.slot, "rule": str(p.rule), "trigger": p.trigger,
                           "job_metadata": json.loads(p.job_metadata)} for p in d.planned],
             "rejected": [{"agent_name": r.planned.agent_name, "slot": r.planned.slot, "reason": r.reason}
                          for r in d.rejected]}
            for what, d in self.events]}


def dry_run(metadata: str, settings: Settings, routing: Routing, *, room_name: str = "dry-run",
            participant: str | None = None, kind: str = "standard") -> CheckResult:
    """What the room's room_started (and, with `participant`, that person's join) would dispatch."""
    room = Room(sid=DRY_RUN_SID, name=room_name, metadata=metadata)
    events = [("room_started", decide(WebhookEvent(event="room_started", id="EV_dry_run", room=room),
                                      routing, settings))]
    if participant:
        who = ParticipantInfo(identity=participant, sid="PA_dry_run", kind=KINDS[kind])
        event = WebhookEvent(event="participant_joined", id="EV_dry_run_join", room=room, participant=who)
        events.append((f"participant_joined ({kind} {participant})", decide(event, routing, settings)))
    return CheckResult(events)


def render(result: CheckResult, settings: Settings) -> str:
    lines: list[str] = []
    seen: set[str] = set()
    for what, d in result.events:
        lines.append(f"on {what}: {d.reason}" + (f"\n  error: {d.error}" if d.error else ""))
        again = [p.agent_name for p in d.planned if p.slot in seen] + [
            r.planned.agent_name for r in d.rejected if r.planned.slot in seen]
        if again:
            # The room's agents are planned on every human join too; their slots make it a no-op.
            lines.append(f"  {', '.join(again)}: the same slot(s) as above, decided once")
        for p in d.planned:
            if p.slot in seen:
                continue
            seen.add(p.slot)
            lines.append(f"  dispatch {p.agent_name}" + (f" for {p.participant_identity}" if p.participant_identity
                                                         else "") + f" ({p.rule}), job metadata:")
            lines.append(f"    {p.job_metadata}")
        for r in d.rejected:
            if r.planned.slot not in seen:
                seen.add(r.planned.slot)
                lines.append(f"  reject   {r.planned.agent_name}: {r.reason}")
        if d.action is Action.IGNORE and not d.error:
            lines.append("  nothing to dispatch")
    allowed = ", ".join(sorted(settings.allowed_agents)) or "none (SWITCHBOARD_ALLOWED_AGENTS is empty)"
    lines.append(f"(allowlist: {allowed}; cap {settings.max_agents_per_room} per room; routing file: "
                 f"{settings.routing_file or 'none'})")
    return "\n".join(lines)


def metadata_schema() -> dict[str, Any]:
    """The room-metadata contract as JSON Schema (draft 2020-12), from the pydantic models."""
    schema = RoomMetadata.model_json_schema(mode="validation")
    # The top level first, the rules' definitions after: the order a reader wants.
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Switchboard room metadata",
            "description": "The keys Switchboard reads from a LiveKit room's metadata. Other top-level keys are "
                           "the application's own and are ignored; inside a rule, unknown keys are errors.",
            "type": "object", "properties": schema["properties"], "$defs": schema["$defs"]}

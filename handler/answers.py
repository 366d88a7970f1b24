"""What one delivery did: with each slot (SlotResult) and with the event (Outcome).

The webhook's answer, the event record and the "event handled" log line are all
built from an Outcome, so they say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .outcomes import SlotOutcome
from .policy import Decision
from .records import EventRecord


@dataclass(frozen=True)
class SlotResult:
    slot: str
    result: SlotOutcome
    retry: bool = False
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = {"slot": self.slot, "result": self.result.value}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class Outcome:
    decision: Decision
    slots: list[SlotResult] = field(default_factory=list)
    note: str = ""
    # A re-delivery of an event already answered 200: that first answer, as recorded.
    replay: EventRecord | None = None
    # The answer, built once when first asked for (the record, the log line and the HTTP
    # answer all carry it); an Outcome is finished by then.
    _answer: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def retry(self) -> bool:
        return any(s.retry for s in self.slots)

    def answer(self) -> dict[str, Any]:
        """The webhook's answer body (beside the event id): the first answer again for a replay."""
        if self._answer is None:
            self._answer = {"decision": dict(self.replay.decision),
                            "outcome": dict(self.replay.outcome, replayed=True)} if self.replay is not None else {
                "decision": self.decision.summary(), "outcome": self.as_dict()}
        return self._answer

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retry": self.retry}
        if self.slots:
            out["slots"] = [s.as_dict() for s in self.slots]
        if self.note:
            out["note"] = self.note
        return out

"""The store's translator, in-process: items to typed records and back to what the CLI prints.

No server: the items are built as DynamoStore writes them (dynamo.to_item), so what is checked
is the codec (boto3's serializer, floats as their repr, numbers back as int or float, string
sets as sorted lists) and the SlotRecord the rest of the handler reads.
"""

from __future__ import annotations

import json
from dataclasses import fields
from decimal import Decimal
from typing import Any

from handler.claims import RECORD_FIELDS
from handler.cli import _public
from handler.codec import event_fields, event_record, from_item, slot_record, to_item
from handler.outcomes import Source
from handler.records import EventRecord, SlotRecord, Status
from handler.settings import DEFAULT_PROJECT

JOINED = {"pk": "ROOM#RM_a", "sk": "DISPATCH#driver", "record_type": "dispatch", "status": "JOINED",
          "room_sid": "RM_a", "room_name": "call", "agent_name": "driver", "rule": "agents", "trigger": "room_started",
          "owner": "o1", "attempts": 2, "generation": 1, "dispatch_id": "AD_2", "agent_identity": "agent-1",
          "agent_sid": "PA_1", "missing_since": 1800000005.25, "lease_expires_at": 1800000010.0,
          "orphans": [{"dispatch_id": "AD_1", "deleted_at": "2026-12-01T00:00:01.000Z", "why": "replaced"}],
          "job_metadata": '{"room_name":"call"}', "created_at": "2026-12-01T00:00:00.000Z", "day": "2026-12-01",
          "joined_at": "2026-12-01T00:00:02.000Z", "project": "alpha", "expires_at": 1802592000}
# A rejected slot, and one written before agent_sid existed: attributes absent, not empty.
REJECTED = {"pk": "ROOM#RM_a", "sk": "DISPATCH#rogue", "record_type": "dispatch", "status": "REJECTED",
            "room_sid": "RM_a", "room_name": "call", "agent_name": "rogue", "rule": "agents", "reason": "not allowed",
            "rejected_at": "2026-12-01T00:00:00.000Z", "participant_identity": ""}
OLD_JOINED = {"pk": "ROOM#RM_b", "sk": "DISPATCH#driver", "record_type": "dispatch", "status": "JOINED",
              "room_sid": "RM_b", "agent_name": "driver", "rule": "on_participant_joined", "attempts": 1,
              "dispatch_id": "AD_9", "agent_identity": "agent-9"}


def old_public(record: dict[str, Any]) -> dict[str, Any]:
    """The CLI's row as it was built from a record dict, before records were typed."""
    out = {name: record.get(name, "" if name != "attempts" else 0) for name in RECORD_FIELDS}
    return {"project": record.get("project") or DEFAULT_PROJECT} | out


def test_every_field_the_cli_prints_is_a_slot_record_field():
    assert set(RECORD_FIELDS) <= {f.name for f in fields(SlotRecord)}


def test_the_cli_prints_a_typed_record_byte_for_byte_as_it_printed_the_item():
    for written in (JOINED, REJECTED, OLD_JOINED):
        stored = from_item(to_item(written))
        assert json.dumps(_public(slot_record(stored)), indent=2) == json.dumps(old_public(stored), indent=2)


def test_numbers_come_back_as_written_and_floats_go_in_as_their_digits():
    item = to_item(JOINED)
    assert item["missing_since"] == {"N": "1800000005.25"} and item["lease_expires_at"] == {"N": "1800000010.0"}
    assert item["attempts"] == {"N": "2"} and item["orphans"]["L"][0]["M"]["why"] == {"S": "replaced"}
    stored = from_item(item)
    assert stored["missing_since"] == 1800000005.25 and type(stored["attempts"]) is int
    assert type(stored["lease_expires_at"]) is int  # an integral number reads back as an int, as it always did
    assert from_item({"open_slots": {"SS": ["b", "a"]}, "n": {"N": "0.5"}}) == {"open_slots": ["a", "b"], "n": 0.5}
    assert not any(isinstance(v, Decimal) for v in stored.values())


def test_a_slot_record_reads_absence_as_its_defaults_and_derives_its_state():
    joined, rejected, old = (slot_record(from_item(to_item(r))) for r in (JOINED, REJECTED, OLD_JOINED))
    assert (joined.status, joined.slot, joined.is_open, joined.missing_since) == (
        Status.JOINED, "DISPATCH#driver", True, 1800000005.25)
    assert (rejected.is_open, rejected.attempts, rejected.generation, rejected.owner) == (False, 0, None, "")
    assert rejected.settled_at == "2026-12-01T00:00:00.000Z" and "participant_identity" in rejected.stored
    assert old.agent_sid is None and old.missing_since is None and old.orphans is None
    failed = slot_record(from_item(to_item(dict(OLD_JOINED, status="FAILED", retryable=True))))
    assert failed.retryable_failure and failed.is_open and failed.being_claimed
    planned = joined.planned_again(trigger="sweep")
    assert (planned.slot, planned.trigger, planned.rule_metadata) == ("DISPATCH#driver", "sweep", {})


def test_an_event_record_writes_the_event_and_its_answer_and_reads_back_as_written():
    record = EventRecord(pk="ROOM#RM_a", sk="EVENT#EV_1", event_id="EV_1", event_type="participant_left",
                         room_name="call", room_sid="RM_a", participant_identity="alice", participant_kind="standard",
                         event_created_at=1800000000, decision={"action": "dispatch", "reason": "r"},
                         outcome={"retry": False, "slots": [{"slot": "DISPATCH#driver", "result": "dispatched"}]},
                         source=Source.SWEEP, project="alpha", deliveries=3, created_at="2026-12-01T00:00:00.000Z")
    written = event_fields(record)
    # What the store stamps itself (the key, the project, the times, the count) is not taken from the record.
    assert set(written) == {"event_id", "event_type", "room_name", "room_sid", "participant_identity",
                            "participant_kind", "event_created_at", "decision", "outcome", "source"}
    assert written["source"] == "sweep" and written["decision"] == {"action": "dispatch", "reason": "r"}
    back = event_record(from_item(to_item(written | {"pk": record.pk, "sk": record.sk})))
    assert back == EventRecord(**{**record.__dict__, "project": "", "deliveries": 0, "created_at": ""})

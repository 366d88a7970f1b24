"""The store's codec: records to DynamoDB items and back, with boto3's serializer, and the
translator from items (decoded) to the typed records (records.py), the one place that builds them.

Numbers go in as DynamoDB's decimals and come back as int, or float where the item holds a
fraction; a string set comes back as a sorted list; None and an empty index key are not stored.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .outcomes import Source
from .policy import Rule
from .records import EventRecord, LogRecord, SlotRecord, Status
from .table import PENDING_ATTRIBUTE

# GSI key attributes may not hold empty strings: leave them out instead.
_INDEX_KEYS = ("room_name", "agent_name", "day", "created_at", PENDING_ATTRIBUTE, "updated_at")


# boto3's codec, for every attribute the store writes or reads. Its serializer refuses
# float (a float's binary value is not the decimal DynamoDB stores): a float goes in as
# the Decimal of its shortest repr, the same digits str() gives. Its deserializer gives
# Decimal and set: what comes out is int or float, and a string set a sorted list.
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def _storable_value(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool:  # most values: no walk
        return value
    if kind is float:
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _storable_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable_value(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool:
        return value
    if kind is Decimal:
        return int(value) if value == value.to_integral_value() else float(value)
    if kind is dict:
        return {k: _plain(v) for k, v in value.items()}
    if kind is list:
        return [_plain(v) for v in value]
    if kind is set:
        return sorted(value)
    return value


def _to_attr(value: Any) -> dict[str, Any]:
    attr: dict[str, Any] = _SERIALIZER.serialize(_storable_value(value))
    return attr


def _from_attr(attr: dict[str, Any]) -> Any:
    return _plain(_DESERIALIZER.deserialize(attr))


def storable(record: dict[str, Any]) -> dict[str, Any]:
    """The fields DynamoDB will take: no None, and no empty string in an index key."""
    return {k: v for k, v in record.items() if not (k in _INDEX_KEYS and v == "") and v is not None}


def to_item(record: dict[str, Any]) -> dict[str, Any]:
    return {k: _to_attr(v) for k, v in storable(record).items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _from_attr(v) for k, v in item.items()}


def expression_values(**values: Any) -> dict[str, Any]:
    return {f":{k}": _to_attr(v) for k, v in values.items()}


# --- the translator: items as read (decoded) to typed records

_SLOT_FIELDS = frozenset(f.name for f in dataclass_fields(SlotRecord)) - {"status", "rule", "stored"}
_EVENT_FIELDS = frozenset(f.name for f in dataclass_fields(EventRecord)) - {"source", "stored"}


def slot_record(stored: dict[str, Any]) -> SlotRecord:
    """A dispatch item, decoded (from_item), as a SlotRecord."""
    return SlotRecord(status=Status(stored["status"]), rule=Rule(stored.get("rule") or Rule.AGENTS), stored=stored,
                      **{k: v for k, v in stored.items() if k in _SLOT_FIELDS})


def event_record(stored: dict[str, Any]) -> EventRecord:
    """An event item, decoded, as an EventRecord."""
    # (An event recorded before sources were, has none: it was a webhook's.)
    return EventRecord(source=Source(stored.get("source") or Source.WEBHOOK), stored=stored,
                       **{k: v for k, v in stored.items() if k in _EVENT_FIELDS})


# What record_event stamps on an event's item itself (or its key), never taken from the record.
_EVENT_STAMPED = frozenset({"pk", "sk", "project", "created_at", "last_received_at", "answered_at", "deliveries",
                            "stored"})
_EVENT_WRITTEN = tuple(f.name for f in dataclass_fields(EventRecord) if f.name not in _EVENT_STAMPED)


def event_fields(record: EventRecord) -> dict[str, Any]:
    """The attributes record_event writes from an EventRecord: the event and its answer."""
    fields = {name: getattr(record, name) for name in _EVENT_WRITTEN}
    fields.update(decision=dict(record.decision), outcome=dict(record.outcome), source=record.source.value)
    return fields


def slot_or_none(stored: dict[str, Any]) -> SlotRecord | None:
    return slot_record(stored) if stored else None


def log_record(stored: dict[str, Any]) -> LogRecord:
    return event_record(stored) if stored.get("record_type") == "event" else slot_record(stored)

"""The one definition of Switchboard's DynamoDB table.

`switchboard table create` builds the table from TABLE, and a test holds
template.yaml to the same keys, indexes and TTL attribute. Change it here only.

Layout (single table):

    pk = "ROOM#<room sid>"  sk = "DISPATCH#<agent>"                 a room agent's slot
    pk = "ROOM#<room sid>"  sk = "DISPATCH#<agent>#P#<identity>"    a per-participant slot
    pk = "ROOM#<room sid>"  sk = "SESSION"                          the room session's counters
    pk = "ROOM#<room sid>"  sk = "EVENT#<event id>"                 one received webhook
    pk = "ROOM#<room sid>"  sk = "REMOVAL#<identity>"               the session under that identity
                                                                    the sweeper is removing

A room sid names one session of a room, so slots never leak across sessions of
a reused room name. Several LiveKit projects share the table: a project other than
"default" puts its name before every key of its rooms, and marks each of its records
with a `project` attribute, so two projects' rooms can share a name or even a sid:

    pk = "PROJECT#<project>#ROOM#<room sid>"   sk as above            project <project>'s records

The "default" project keeps the layout above, with no `project` attribute: a table
written before projects existed is the default project's, as it was (upgrade in place).
The indexes are shared: reads through them filter on `project` (store.project_filter).
The indexes answer the review questions:

    by_room   room_name + created_at    "what happened in room X?" (every session)
    by_day    day + created_at          "what happened in this time window?" across rooms
    by_agent  agent_name + created_at   "where did the driver agent go?"
    by_pending  pending_day + updated_at   the sweeper's work list: sparse, it holds only
                slots not yet settled (CLAIMED, DISPATCHED awaiting its agent, FAILED
                but retryable); the attribute is removed when a slot settles.
"""

from __future__ import annotations

from typing import Any

PK = "pk"
SK = "sk"
TTL_ATTRIBUTE = "expires_at"

INDEX_BY_ROOM = "by_room"
INDEX_BY_DAY = "by_day"
INDEX_BY_AGENT = "by_agent"
INDEX_BY_PENDING = "by_pending"
PENDING_ATTRIBUTE = "pending_day"

_INDEXES: dict[str, tuple[str, str]] = {
    INDEX_BY_ROOM: ("room_name", "created_at"),
    INDEX_BY_DAY: ("day", "created_at"),
    INDEX_BY_AGENT: ("agent_name", "created_at"),
    INDEX_BY_PENDING: (PENDING_ATTRIBUTE, "updated_at"),
}

KEY_SCHEMA: list[dict[str, str]] = [
    {"AttributeName": PK, "KeyType": "HASH"},
    {"AttributeName": SK, "KeyType": "RANGE"},
]

ATTRIBUTE_DEFINITIONS: list[dict[str, str]] = [
    {"AttributeName": name, "AttributeType": "S"}
    for name in sorted({PK, SK, *(a for pair in _INDEXES.values() for a in pair)})
]

GLOBAL_SECONDARY_INDEXES: list[dict[str, Any]] = [
    {
        "IndexName": index,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
    for index, (hash_key, range_key) in _INDEXES.items()
]


def create_table_request(table_name: str) -> dict[str, Any]:
    """The CreateTable request for this table, on-demand billing."""
    return {
        "TableName": table_name,
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": ATTRIBUTE_DEFINITIONS,
        "GlobalSecondaryIndexes": GLOBAL_SECONDARY_INDEXES,
        "BillingMode": "PAY_PER_REQUEST",
    }


DEFAULT_PROJECT = "default"  # the same as settings.DEFAULT_PROJECT; table.py imports nothing
PROJECT_ATTRIBUTE = "project"


def room_pk(room_sid: str, project: str = DEFAULT_PROJECT) -> str:
    if project == DEFAULT_PROJECT:
        return f"ROOM#{room_sid}"
    # Project names hold no "#" (settings.PROJECT_NAME_PATTERN): no pk of one project is another's.
    return f"PROJECT#{project}#ROOM#{room_sid}"


def dispatch_sk(agent_name: str, participant_identity: str = "") -> str:
    # Agent names are restricted to [A-Za-z0-9_.-], so "#P#" cannot occur inside one;
    # the identity comes last and may hold anything.
    if participant_identity:
        return f"DISPATCH#{agent_name}#P#{participant_identity}"
    return f"DISPATCH#{agent_name}"


SESSION_SK = "SESSION"


def event_sk(event_id: str) -> str:
    return f"EVENT#{event_id}"


def removal_sk(identity: str) -> str:
    return f"REMOVAL#{identity}"

"""The DispatchStore on DynamoDB, through aioboto3.

Every state change is one conditional write, so two handler processes (or two
Lambda instances) can race on a slot and exactly one of them wins.

Longer than the ~300 lines the other modules keep to, on purpose: it is the one
class that talks to DynamoDB, and every condition that makes a slot exactly-once
is a line of it, so whether two writes can race is read in one file. What is not
a DynamoDB call lives apart: the item <-> record translation (codec.py), the
table's keys and indexes (table.py), the records themselves (records.py).
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .claims import (
    DONE,
    OPEN,
    Claim,
    ClaimInProgress,
    LeaseLost,
    RoomCapReached,
    SlotAlreadyDispatched,
    SlotClosed,
    Status,
    StoreUnavailable,
)
from .codec import (
    event_fields,
    event_record,
    expression_values,
    from_item,
    log_record,
    slot_or_none,
    slot_record,
    storable,
    to_item,
)
from .policy import PlannedDispatch, Rule
from .records import EventRecord, LogRecord, SlotRecord
from .settings import DEFAULT_PROJECT, Settings
from .table import (
    INDEX_BY_AGENT,
    INDEX_BY_DAY,
    INDEX_BY_PENDING,
    INDEX_BY_ROOM,
    PENDING_ATTRIBUTE,
    PK,
    PROJECT_ATTRIBUTE,
    SESSION_SK,
    SK,
    TTL_ATTRIBUTE,
    removal_sk,
    room_pk,
)
from .timestamps import epoch, iso

# How long a removal note answers for its identity: the removed session's participant_left
# comes within seconds, and LiveKit drops a webhook it could not send within 30 s.
REMOVAL_NOTE_SECONDS = 60.0


class DynamoStore:
    """DispatchStore backed by one DynamoDB table (see table.py), for one LiveKit project.

    Every key it writes and every index it reads is its project's (`project`). A store of
    project None writes nothing and reads every project's records: the CLI's and the page's.
    """

    def __init__(self, client: Any, settings: Settings, *, clock: Callable[[], float] = time.time,
                 project: str | None = DEFAULT_PROJECT) -> None:
        self._db = client
        self._table = settings.table_name
        self._settings = settings
        self._clock = clock
        self.project = project

    def for_project(self, project: str | None) -> DynamoStore:
        """The same table and client, for another project."""
        other = copy.copy(self)
        other.project = project
        return other

    def room_pk(self, room_sid: str) -> str:
        if self.project is None:
            raise RuntimeError("a store of every project only reads: pick a project to write")
        return room_pk(room_sid, self.project)

    def project_filter(self) -> tuple[str, dict[str, Any], dict[str, str]]:
        """A FilterExpression, its values and its names, that keeps this project's records of a
        shared index ("project" is a DynamoDB reserved word: it goes through a placeholder)."""
        if self.project is None:
            return "", {}, {}
        names = {"#project": PROJECT_ATTRIBUTE}
        if self.project == DEFAULT_PROJECT:
            # The default project's records carry no project attribute, old and new alike.
            return "attribute_not_exists(#project)", {}, names
        return "#project = :project", {"project": self.project}, names

    def _project_fields(self) -> dict[str, Any]:
        return {} if self.project in (None, DEFAULT_PROJECT) else {PROJECT_ATTRIBUTE: self.project}

    # --- construction -----------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, **kwargs: Any) -> AsyncIterator[DynamoStore]:
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(dynamodb_client(settings))
            yield cls(client, settings, **kwargs)

    # --- reads ------------------------------------------------------------

    async def load_slots(self, room_sid: str) -> dict[str, SlotRecord]:
        items = await self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=expression_values(pk=self.room_pk(room_sid), prefix="DISPATCH#"),
            ConsistentRead=True,
        )
        return {item[SK]: slot_record(item) for item in items}

    async def query_log(self, *, room: str | None = None, agent: str | None = None,
                        status: str | None = None, since: float, record_type: str = "dispatch",
                        limit: int = 1000) -> list[LogRecord]:
        """Dispatch (or event) records newest first, through the index that fits the filter."""
        since_iso = iso(since)
        filters = ["record_type = :rt"]
        values: dict[str, Any] = {"rt": record_type, "since": since_iso}
        if status:
            filters.append("#status = :status")
            values["status"] = status
        names = {"#status": "status"} if status else {}
        project_filter, project_values, project_names = self.project_filter()
        if project_filter:
            filters.append(project_filter)
            values.update(project_values)
            names |= project_names

        def query(index: str, key: str, value: str) -> dict[str, Any]:
            return {
                "IndexName": index,
                # "day" is a DynamoDB reserved word: name every key through a placeholder.
                "KeyConditionExpression": "#key = :key AND created_at >= :since",
                "ExpressionAttributeValues": expression_values(key=value, **values),
                "ExpressionAttributeNames": names | {"#key": key},
                "ScanIndexForward": False,
            }

        if room:
            if agent:
                filters.append("agent_name = :agent")
                values["agent"] = agent
            requests = [query(INDEX_BY_ROOM, "room_name", room)]
        elif agent:
            requests = [query(INDEX_BY_AGENT, "agent_name", agent)]
        else:
            requests = [query(INDEX_BY_DAY, "day", day) for day in _days_since(since, self._clock())]
        out: list[dict[str, Any]] = []
        for request in requests:
            request["FilterExpression"] = " AND ".join(filters)
            out.extend(await self._query_all(**request, limit=limit - len(out)))
            if len(out) >= limit:
                break
        out.sort(key=lambda r: r.get("created_at", ""), reverse=True)
        return [log_record(r) for r in out[:limit]]

    async def pending(self, days: int = 2) -> list[SlotRecord]:
        """Every slot not yet settled that became pending in the last `days` days: the sweeper's list."""
        out: list[dict[str, Any]] = []
        now = self._clock()
        project_filter, project_values, project_names = self.project_filter()
        filtered: dict[str, Any] = {"FilterExpression": project_filter} if project_filter else {}
        for day in _days_since(now - (days - 1) * 86400, now):
            out += await self._query_all(
                IndexName=INDEX_BY_PENDING, KeyConditionExpression="#p = :day",
                ExpressionAttributeNames={"#p": PENDING_ATTRIBUTE} | project_names,
                ExpressionAttributeValues=expression_values(day=day, **project_values), **filtered)
        return [slot_record(r) for r in out]

    async def settle(self, record: SlotRecord, status: Status, reason: str, *,
                     as_of: float | None = None) -> bool:
        """Close a slot for good: FAILED (its agent never came, or left with no attempts
        left) or ENDED (its agent left as intended, isn't wanted any more, or its room
        session is over).

        Conditional on the slot being as `record` read it, so a slot someone has moved
        on since (joined, taken over) is left alone and False comes back. `as_of` is when
        what the decision rests on was read (a participant found gone): a participant
        who joined after it re-opens the slot (_new_presence), even if the write is later.
        """
        now = iso(self._clock())
        as_of_ms = int((self._clock() if as_of is None else as_of) * 1000)
        if status == Status.FAILED:
            fields = "#status = :new, #why = :why, failed_at = :now, updated_at = :now, retryable = :no"
            names = {"#why": "error"}
        elif status == Status.ENDED:
            fields = "#status = :new, #why = :why, ended_at = :now, updated_at = :now"
            names = {"#why": "reason"}
        else:
            raise ValueError(f"a slot is settled as FAILED or ENDED, not {status}")
        settled, _ = await self._conditional_update(
            record.pk, record.sk,
            UpdateExpression=f"SET {fields}, settled_as_of_ms = :as_of REMOVE {PENDING_ATTRIBUTE}, lease_expires_at, "
                             "missing_since"
            + (", retryable" if status == Status.ENDED else ""),
            ConditionExpression="#status = :old AND #owner = :owner",
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"} | names,
            ExpressionAttributeValues=expression_values(
                new=status.value, why=reason[:2000], now=now, as_of=as_of_ms, old=record.status.value,
                owner=record.owner, **({"no": False} if status == Status.FAILED else {})),
        )
        if settled:
            await self._release(record.pk, record.sk)
        return settled

    async def mark_missing(self, record: SlotRecord, seen_missing: bool) -> SlotRecord | None:
        """Note, or clear, that a JOINED slot's agent is not in its room (the sweeper's check).

        Returns the slot as it now stands; None if it was no longer the JOINED slot read.
        The first sighting is kept: how long an agent has been missing is what counts.
        """
        now = self._clock()
        update = ("SET missing_since = if_not_exists(missing_since, :now)" if seen_missing
                  else "REMOVE missing_since")
        written, current = await self._conditional_update(
            record.pk, record.sk,
            UpdateExpression=update,
            ConditionExpression="#status = :joined AND #owner = :owner AND agent_identity = :ident",
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
            ExpressionAttributeValues=expression_values(joined=Status.JOINED.value, owner=record.owner,
                                              ident=record.agent_identity,
                                              **({"now": now} if seen_missing else {})),
            ReturnValues="ALL_NEW",
        )
        return current if written else None

    async def room_timeline(self, room_name: str, since: float) -> list[LogRecord]:
        """Every event and dispatch record of a room name, oldest first."""
        project_filter, project_values, project_names = self.project_filter()
        filtered: dict[str, Any] = ({"FilterExpression": project_filter, "ExpressionAttributeNames": project_names}
                                    if project_filter else {})
        items = await self._query_all(
            IndexName=INDEX_BY_ROOM,
            KeyConditionExpression="room_name = :room AND created_at >= :since",
            ExpressionAttributeValues=expression_values(room=room_name, since=iso(since), **project_values),
            **filtered,
        )
        return [log_record(r) for r in sorted(items, key=lambda r: r.get("created_at", ""))]

    # --- the claim state machine --------------------------------------------

    async def claim(self, planned: PlannedDispatch, event_id: str, existing: SlotRecord | None,
                    *, redispatch: str | None = None) -> Claim:
        """Own the slot, or raise the ClaimError that says why not.

        `redispatch` (the reason) also takes over a DISPATCHED or JOINED slot: the
        sweeper's way to replace a dispatch whose agent never came or left.
        """
        # Bounded: each turn either wins, raises, or saw the slot change under it.
        for turn in range(5):
            if existing is None:
                claim, existing = await self._claim_new(planned, event_id)
            else:
                # A re-dispatch replaces the slot as the caller read it. If it changed since
                # (the agent joined after all, or another sweep or webhook replaced it
                # first), that news wins: it is judged as any delivery's would be.
                claim, existing = await self._take_over(planned, event_id, existing,
                                                        redispatch if turn == 0 else None)
            if claim is not None:
                return claim
        raise ClaimInProgress(planned.slot, existing, "the slot kept changing under concurrent claims")

    async def _claim_new(self, planned: PlannedDispatch, event_id: str) -> tuple[Claim | None, SlotRecord | None]:
        now = self._clock()
        owner = uuid.uuid4().hex
        record = self._new_record(planned, event_id, now, Status.CLAIMED) | {
            "owner": owner,
            "attempts": 1,
            "generation": 1,
            "lease_expires_at": now + self._settings.claim_lease_seconds,
            "claimed_at": iso(now),
            "job_metadata": planned.job_metadata,
            PENDING_ATTRIBUTE: iso(now)[:10],
        }
        # botocore fills in ClientRequestToken, so its own retry of this transaction
        # is answered as the first try was, never as a failed condition.
        reasons = await self._transact([
            {"Put": {
                "TableName": self._table,
                "Item": to_item(record),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }},
            self._occupy(planned, now),
        ])
        if reasons is not None:
            slot_reason, cap_reason = (reasons + [{}, {}])[:2]
            if slot_reason.get("Code") == "ConditionalCheckFailed":
                return None, slot_or_none(from_item(slot_reason.get("Item") or {}))
            if cap_reason.get("Code") == "ConditionalCheckFailed":
                await self._room_is_full(planned)
            # TransactionConflict, or a cap that was counting slots since closed: decide again.
            await asyncio.sleep(0.02)
            return None, (await self.load_slots(planned.room_sid)).get(planned.slot)
        return Claim(planned, owner, attempt=1, takeover=False), None

    def _occupy(self, planned: PlannedDispatch, now: float) -> dict[str, Any]:
        """The room's cap, as a transaction item: the slot joins the session's set of open
        slots unless the set is full. A slot leaves the set when it settles (_release), so
        the cap counts agents a room has now, not every slot it ever had."""
        cap = self._settings.max_agents_per_room
        return {"Update": {
            "TableName": self._table,
            "Key": to_item({PK: self.room_pk(planned.room_sid), SK: SESSION_SK}),
            "UpdateExpression": "ADD open_slots :slotset SET room_name = if_not_exists(room_name, :room), "
                                "record_type = :rt, expires_at = :ttl",
            "ConditionExpression": "attribute_not_exists(open_slots) OR size(open_slots) < :cap "
                                   "OR contains(open_slots, :slot)",
            "ExpressionAttributeValues": {
                ":slotset": {"SS": [planned.slot]}, ":slot": {"S": planned.slot}, ":cap": {"N": str(cap)},
                ":room": {"S": planned.room_name}, ":rt": {"S": "session"},
                ":ttl": {"N": str(int(now + self._settings.dispatch_retention_days * 86400))}},
        }}

    async def _room_is_full(self, planned: PlannedDispatch) -> None:
        """Raise RoomCapReached, unless the session's set of open slots holds slots that have
        settled since (a release that never ran): then rewrite the set from the slots and return."""
        pk = self.room_pk(planned.room_sid)
        session = await self._call("get_item", Key=to_item({PK: pk, SK: SESSION_SK}), ConsistentRead=True)
        counted = set((session.get("Item") or {}).get("open_slots", {}).get("SS", []))
        really_open = {key for key, record in (await self.load_slots(planned.room_sid)).items() if record.is_open}
        if counted <= really_open:
            raise RoomCapReached(planned.slot, None,
                                 f"room cap of {self._settings.max_agents_per_room} agents reached")
        stale = sorted(counted - really_open)
        await self._call("update_item", Key=to_item({PK: pk, SK: SESSION_SK}),
                         UpdateExpression="DELETE open_slots :stale",
                         ExpressionAttributeValues={":stale": {"SS": stale}})

    async def _take_over(self, planned: PlannedDispatch, event_id: str, existing: SlotRecord,
                         redispatch: str | None) -> tuple[Claim | None, SlotRecord | None]:
        status = existing.status
        now = self._clock()
        reopen = _new_presence(planned, existing)
        if not reopen:
            if status in DONE and not (redispatch and status in (Status.DISPATCHED, Status.JOINED)):
                raise SlotAlreadyDispatched(planned.slot, existing)
            if status == Status.REJECTED:
                raise SlotClosed(planned.slot, existing, f"rejected: {existing.reason}")
            if status == Status.CLAIMED and existing.lease_expires_at > now:
                raise ClaimInProgress(planned.slot, existing)
        attempts = 0 if reopen else existing.attempts
        # An expired claim on the last attempt is finished, not retried: adopt or fail.
        last_chance = status == Status.CLAIMED and attempts >= self._settings.max_dispatch_attempts
        if last_chance:
            attempts -= 1
        if status == Status.FAILED and not reopen and (
                not existing.retryable or attempts >= self._settings.max_dispatch_attempts):
            raise SlotClosed(planned.slot, existing, f"failed after {attempts} attempt(s): {existing.error}")
        if reopen:
            # A settled slot counts against the cap again.
            await self._reoccupy(planned, now)

        owner = uuid.uuid4().hex
        generation = (1 if existing.generation is None else existing.generation) + (1 if reopen else 0)
        # A re-dispatch condemns the slot's dispatch; a takeover of a claim that was replacing
        # one carries on replacing it (its owner may have died before deleting it).
        replacing = (existing.dispatch_id if redispatch else existing.replacing) \
            if not reopen else ""
        written, current = await self._conditional_update(
            existing.pk, existing.sk,
            UpdateExpression="SET #status = :claimed, #owner = :owner, lease_expires_at = :lease, "
                             "attempts = :attempts, claimed_at = :now, updated_at = :now, event_id = :event, "
                             "#trigger = :trigger, job_metadata = :job, #pending = :day, generation = :gen, "
                             "triggered_by = :by, presence_sid = :presence, presence_joined_ms = :joined"
                             + (", redispatch_reason = :why" if redispatch else "")
                             + (", replacing = :replacing" if replacing else "")
                             + " REMOVE retryable, missing_since"
                             + (", dispatch_id, agent_identity, agent_sid, joined_at, ended_at, failed_at, "
                                "#error, reason, orphans, settled_as_of_ms, replacing"
                                + ("" if redispatch else ", redispatch_reason")
                                if reopen else ""),
            # Optimistic: only if nobody moved the slot since we read it.
            ConditionExpression="#status = :old_status AND " + (
                "#owner = :old_owner" if existing.owner else "attribute_not_exists(#owner)"),
            ExpressionAttributeNames={"#status": "status", "#owner": "owner", "#trigger": "trigger",
                                      "#pending": PENDING_ATTRIBUTE} | ({"#error": "error"} if reopen else {}),
            ExpressionAttributeValues=expression_values(
                claimed=Status.CLAIMED.value, owner=owner, attempts=attempts + 1,
                lease=now + self._settings.claim_lease_seconds, now=iso(now), event=event_id,
                trigger=planned.trigger, job=planned.job_metadata, day=iso(now)[:10], gen=generation,
                by=planned.triggered_by or existing.triggered_by,
                presence=planned.participant_sid or existing.presence_sid,
                joined=planned.participant_joined_ms or existing.presence_joined_ms,
                old_status=status.value, **({"old_owner": existing.owner} if existing.owner else {}),
                **({"why": redispatch} if redispatch else {}), **({"replacing": replacing} if replacing else {})),
        )
        if not written:
            return None, current or None
        return Claim(planned, owner, attempt=attempts + 1, takeover=not reopen,
                     previous_dispatch_id="" if reopen else existing.dispatch_id,
                     last_chance=last_chance, replacing=replacing), None

    async def _reoccupy(self, planned: PlannedDispatch, now: float) -> None:
        for _ in range(2):
            reasons = await self._transact([self._occupy(planned, now)])
            if reasons is None:
                return
            if (reasons + [{}])[0].get("Code") == "ConditionalCheckFailed":
                await self._room_is_full(planned)
            else:
                await asyncio.sleep(0.02)
        raise ClaimInProgress(planned.slot, None, "the room's cap kept changing under concurrent claims")

    async def mark_dispatched(self, claim: Claim, dispatch_id: str, *, adopted: bool = False) -> None:
        now = iso(self._clock())
        extra = {"reason": "adopted the dispatch an earlier attempt created"} if adopted else {}
        await self._owner_update(claim, Status.DISPATCHED, dict(dispatch_id=dispatch_id, dispatched_at=now, **extra),
                                 remove=("replacing",))

    async def mark_failed(self, claim: Claim, error: str, *, retryable: bool) -> None:
        now = iso(self._clock())
        retryable = retryable and claim.attempt < self._settings.max_dispatch_attempts
        # A final failure leaves the sweeper's work list; a retryable one stays on it.
        failed = {"error": error[:2000], "failed_at": now, "retryable": retryable}
        await self._owner_update(claim, Status.FAILED, failed,
                                 remove=() if retryable else (PENDING_ATTRIBUTE,))
        if not retryable:
            await self._release(self.room_pk(claim.planned.room_sid), claim.planned.slot)

    async def _owner_update(self, claim: Claim, status: Status, fields: dict[str, Any],
                            remove: tuple[str, ...] = ()) -> None:
        fields = fields | {"status": status.value, "updated_at": iso(self._clock())}
        names = {f"#{k}": k for k in fields}
        written, current = await self._conditional_update(
            self.room_pk(claim.planned.room_sid), claim.planned.slot,
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in fields)
            + " REMOVE " + ", ".join(("lease_expires_at", *remove)),
            ConditionExpression="#owner = :me AND #status = :claimed",
            ExpressionAttributeNames=names | {"#owner": "owner"},
            ExpressionAttributeValues=expression_values(**fields, me=claim.owner, claimed=Status.CLAIMED.value),
        )
        if not written:
            raise LeaseLost(claim.planned.slot, current, "the claim was taken over before it completed")

    async def record_rejection(self, planned: PlannedDispatch, event_id: str, reason: str) -> bool:
        now = self._clock()
        record = self._new_record(planned, event_id, now, Status.REJECTED) | {
            "reason": reason, "rejected_at": iso(now)}
        written, _ = await self._write_if("put_item", Item=to_item(record),
                                          ConditionExpression="attribute_not_exists(pk)")
        return written

    async def mark_joined(self, room_sid: str, slot: str, agent_identity: str, dispatch_id: str,
                          agent_sid: str = "") -> bool:
        """JOINED, if the slot is still DISPATCHED to `dispatch_id`: a late join of a dispatch
        the slot has since replaced must not confirm its successor."""
        now = iso(self._clock())
        written, _ = await self._conditional_update(
            self.room_pk(room_sid), slot,
            UpdateExpression="SET #status = :joined, joined_at = :now, updated_at = :now, agent_identity = :ident, "
                             f"agent_sid = :sid REMOVE {PENDING_ATTRIBUTE}, lease_expires_at, missing_since",
            # Only a recorded dispatch can be joined: a CLAIMED slot's owner is still writing its id.
            ConditionExpression="#status = :dispatched AND dispatch_id = :dispatch",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=expression_values(joined=Status.JOINED.value, now=now, ident=agent_identity,
                                              sid=agent_sid, dispatch=dispatch_id,
                                              dispatched=Status.DISPATCHED.value),
        )
        return written

    async def end_room(self, room_sid: str, reason: str = "the room session finished") -> int:
        """ENDED for every slot of the session that is not settled yet, a retryable failure
        included: nothing may dispatch a finished session's slot into a later one."""
        ended = 0
        for slot, record in (await self.load_slots(room_sid)).items():
            if not record.is_open:
                continue
            now = iso(self._clock())
            written, _ = await self._conditional_update(
                self.room_pk(room_sid), slot,
                UpdateExpression="SET #status = :ended, ended_at = :now, updated_at = :now, reason = :why "
                                 f"REMOVE lease_expires_at, {PENDING_ATTRIBUTE}, retryable",
                ConditionExpression="#status IN (:claimed, :dispatched, :joined) "
                                    "OR (#status = :failed AND retryable = :yes)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=expression_values(ended=Status.ENDED.value, now=now, why=reason[:2000],
                                                  failed=Status.FAILED.value, yes=True,
                                                  **{s.value.lower(): s.value for s in OPEN}),
            )
            ended += written
        return ended

    async def note_orphan(self, record: SlotRecord, dispatch_id: str, why: str) -> None:
        """Write on the slot that a dispatch carrying it, not its own, was deleted, and why."""
        note = {"dispatch_id": dispatch_id, "deleted_at": iso(self._clock()), "why": why[:500]}
        # A slot gone since (its record expired) needs no note: a failed condition is no error.
        await self._write_if(
            "update_item", Key=to_item({PK: record.pk, SK: record.sk}),
            UpdateExpression="SET orphans = list_append(if_not_exists(orphans, :none), :note)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=expression_values(none=[], note=[note]))

    async def note_removal(self, room_sid: str, identity: str, sid: str) -> None:
        """Write, before RemoveParticipant, which session under `identity` the sweeper removes.

        RemoveParticipant takes an identity, and workers reuse identities: should another
        session have taken it in between, LiveKit removes that one instead, and its departure
        (PARTICIPANT_REMOVED, which otherwise means someone meant it) must not end its slot.
        """
        now = self._clock()
        item = {PK: self.room_pk(room_sid), SK: removal_sk(identity), "participant_sid": sid,
                "noted_at": iso(now), "record_type": "removal",
                TTL_ATTRIBUTE: int(now + REMOVAL_NOTE_SECONDS), **self._project_fields()}
        await self._call("put_item", Item=to_item(storable(item)))

    async def removal_aimed_at(self, room_sid: str, identity: str) -> str | None:
        """The sid of the session under `identity` the sweeper lately removed, or None."""
        response = await self._call("get_item", Key=to_item({PK: self.room_pk(room_sid), SK: removal_sk(identity)}),
                                    ConsistentRead=True)
        item = from_item(response.get("Item") or {})
        # DynamoDB's TTL deletes late, so the expiry is checked here too.
        if not item or float(item[TTL_ATTRIBUTE]) < self._clock():
            return None
        return str(item["participant_sid"])

    async def replay_event(self, pk: str, sk: str) -> EventRecord | None:
        """A re-delivered event's record, if its first handling was answered 200; else None.

        One conditional UpdateItem that counts the delivery where there is an answer to
        replay, and fails fast (no item returned, nothing written) where there is none:
        the common first delivery, or one whose handling did not complete (a 503, a crash,
        a budget spent), which must be handled again.
        """
        answered, response = await self._write_if(
            "update_item", Key=to_item({PK: pk, SK: sk}),
            ConditionExpression="attribute_exists(answered_at)",
            UpdateExpression="SET last_received_at = :now ADD deliveries :one",
            ExpressionAttributeValues=expression_values(now=iso(self._clock()), one=1),
            ReturnValues="ALL_NEW")
        return event_record(from_item(response.get("Attributes") or {})) if answered else None

    async def record_event(self, event: EventRecord, *, received_at: float, answered: bool) -> None:
        """Upsert one received webhook; a redelivery bumps `deliveries` and keeps the first time.

        `received_at` is when this delivery came. `answered` (True when the webhook is answered
        200) stamps `answered_at` once: from then on a re-delivery is replayed from this record
        (replay_event). A record of an answer
        that asks for a retry never overwrites one that was answered: two deliveries handled
        at once may finish in either order, and the 200 is the answer that stands.
        """
        now = self._clock()
        fields = event_fields(event)
        fields["last_received_at"] = iso(now)
        fields["record_type"] = "event"
        fields.update(self._project_fields())
        fields[TTL_ATTRIBUTE] = int(now + self._settings.event_retention_days * 86400)
        fields = storable(fields)
        names = {f"#{k}": k for k in fields} | {"#created_at": "created_at", "#day": "day"}
        values = expression_values(**fields, created_at=iso(received_at), day=iso(received_at)[:10], one=1)
        expression = ("SET " + ", ".join(f"#{k} = :{k}" for k in fields)
                      + ", #created_at = if_not_exists(#created_at, :created_at), #day = if_not_exists(#day, :day)")
        condition: dict[str, str] = {}
        if answered:
            expression += ", answered_at = if_not_exists(answered_at, :answered_at)"
            values |= expression_values(answered_at=iso(now))
        else:
            condition = {"ConditionExpression": "attribute_not_exists(answered_at)"}
        # A failed condition: another delivery of it was answered 200 meanwhile, and that record
        # stands. (An answered record's write has no condition: it cannot fail one.)
        await self._write_if(
            "update_item", Key=to_item({PK: event.pk, SK: event.sk}),
            UpdateExpression=expression + " ADD deliveries :one",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values, **condition)

    # --- helpers ------------------------------------------------------------

    async def _conditional_update(self, pk: str, sk: str, **request: Any) -> tuple[bool, SlotRecord | None]:
        """One conditional UpdateItem: (True, the item as written, if ReturnValues asks for it)
        or (False, the item as it stands, which says why the condition failed).

        Every such write stamps a fresh `write_token`. botocore retries a write whose answer
        timed out; when the first try had in fact applied, the retry fails its own condition,
        and the token in the item it meets says the write was ours after all.
        """
        token = uuid.uuid4().hex
        expression = request.pop("UpdateExpression")
        request["UpdateExpression"] = (f"SET write_token = :write_token, {expression[4:]}"
                                       if expression.startswith("SET ")
                                       else f"SET write_token = :write_token {expression}")
        request["ExpressionAttributeValues"] = request.get("ExpressionAttributeValues", {}) | {
            ":write_token": {"S": token}}
        written, response = await self._write_if("update_item", Key=to_item({PK: pk, SK: sk}),
                                                 ReturnValuesOnConditionCheckFailure="ALL_OLD", **request)
        if not written:
            current = from_item(response.get("Item") or {})
            return current.get("write_token") == token, slot_or_none(current)
        return True, slot_or_none(from_item(response.get("Attributes") or {}))

    async def _release(self, pk: str, slot: str) -> None:
        """The slot no longer counts against its room's cap (see _claim_new)."""
        await self._call("update_item", Key=to_item({PK: pk, SK: SESSION_SK}),
                         UpdateExpression="DELETE open_slots :slot",
                         ExpressionAttributeValues={":slot": {"SS": [slot]}})

    def _new_record(self, planned: PlannedDispatch, event_id: str, now: float, status: Status) -> dict[str, Any]:
        return {
            PK: self.room_pk(planned.room_sid),
            SK: planned.slot,
            "record_type": "dispatch",
            **self._project_fields(),
            "status": status.value,
            "room_sid": planned.room_sid,
            "room_name": planned.room_name,
            "agent_name": planned.agent_name,
            "participant_identity": planned.participant_identity,
            "triggered_by": planned.triggered_by,
            "presence_sid": planned.participant_sid,
            "presence_joined_ms": planned.participant_joined_ms,
            "rule": planned.rule.value,
            "trigger": planned.trigger,
            "event_id": event_id,
            "created_at": iso(now),
            "updated_at": iso(now),
            "day": iso(now)[:10],
            TTL_ATTRIBUTE: int(now + self._settings.dispatch_retention_days * 86400),
        }

    async def _query_all(self, *, limit: int = 10_000, **request: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = await self._call("query", **request)
            out.extend(from_item(i) for i in page.get("Items", []))
            key = page.get("LastEvaluatedKey")
            if not key or len(out) >= limit:
                return out
            request["ExclusiveStartKey"] = key

    # --- the calls: every DynamoDB call goes through one of these three ------------

    async def _call(self, operation: str, **request: Any) -> dict[str, Any]:
        """One call on the table. Whatever goes wrong on the way (a service error, a timeout,
        a refused connection, spent retries) is StoreUnavailable: the webhook answers 503."""
        try:
            response: dict[str, Any] = await getattr(self._db, operation)(TableName=self._table, **request)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc) from exc
        return response

    async def _write_if(self, operation: str, **request: Any) -> tuple[bool, dict[str, Any]]:
        """One conditional write: (True, its answer), or (False, the error's response) when the
        condition failed: with ReturnValuesOnConditionCheckFailure, its "Item" is the item as it
        stands. Any other failure is StoreUnavailable."""
        try:
            response: dict[str, Any] = await getattr(self._db, operation)(TableName=self._table, **request)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise unavailable(exc) from exc
            return False, dict(exc.response)
        except BotoCoreError as exc:
            raise unavailable(exc) from exc
        return True, response

    async def _transact(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """One TransactWriteItems: None when it applied, or the cancellation reasons (one per
        item, in order) when it was cancelled. Any other failure is StoreUnavailable."""
        try:
            await self._db.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise unavailable(exc) from exc
            return list(exc.response.get("CancellationReasons") or [])
        except BotoCoreError as exc:
            raise unavailable(exc) from exc
        return None


def _new_presence(planned: PlannedDispatch, existing: SlotRecord) -> bool:
    """A participant rule's slot that settled (its agent left or never came) is opened again,
    as a new generation, by a participant who joined after it settled: a caller who comes
    back, or a room that emptied and filled again. A re-delivery of the join that opened
    it, or a reconcile of someone there all along, joined before and stays a duplicate.
    Join times are LiveKit's clock and settle times ours: this assumes they agree to well
    under the time between a hang-up and the next call."""
    if planned.rule is not Rule.ON_PARTICIPANT_JOINED or not planned.participant_joined_ms:
        return False
    if existing.retryable_failure or existing.status not in (Status.ENDED, Status.FAILED, Status.REJECTED):
        return False
    if existing.settled_as_of_ms:
        return planned.participant_joined_ms >= existing.settled_as_of_ms
    settled_at = existing.settled_at
    return bool(settled_at) and planned.participant_joined_ms > int(epoch(settled_at) * 1000)


def _days_since(since: float, now: float) -> Iterable[str]:
    day = datetime.fromtimestamp(now, UTC).date()
    first = datetime.fromtimestamp(since, UTC).date()
    while day >= first:
        yield day.isoformat()
        day -= timedelta(days=1)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def unavailable(exc: ClientError | BotoCoreError) -> StoreUnavailable:
    """What a DynamoDB call that failed (a service error, or botocore's on the way) means here."""
    code = error_code(exc) if isinstance(exc, ClientError) else ""
    # The class name and the service's error code say what went wrong; the
    # message can echo request parameters, so it stays out.
    return StoreUnavailable(f"DynamoDB {code or type(exc).__name__}")


@asynccontextmanager
async def dynamodb_client(settings: Settings) -> AsyncIterator[Any]:
    """An aioboto3 DynamoDB client with bounded timeouts and retries.

    The endpoint comes from AWS_ENDPOINT_URL_DYNAMODB, which botocore reads itself.
    """
    import aioboto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.dynamodb_connect_timeout_seconds,
        read_timeout=settings.dynamodb_read_timeout_seconds,
        retries={"max_attempts": settings.dynamodb_max_attempts, "mode": "standard"},
    )
    session = aioboto3.Session()
    async with session.client("dynamodb", region_name=settings.aws_region, config=config) as client:
        yield client

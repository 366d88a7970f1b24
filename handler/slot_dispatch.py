"""Dispatching one slot: claim → CreateDispatch → mark, with every way it can go wrong.

The orchestrator of the slot's state machine (claims.Status): a webhook's slots, a
replacement for an agent that left (presence.py) and the sweeper's re-dispatch all
come through `SlotDispatch.run`, so a slot is claimed, adopted, withdrawn and failed
the same way whoever asks.
"""

from __future__ import annotations

import logging
import time

from .answers import SlotResult
from .claims import ClaimInProgress, DispatchStore, LeaseLost, RoomCapReached, SlotAlreadyDispatched, SlotClosed, Status
from .dispatcher import LiveKitDispatcher, LiveKitError, LiveKitUnavailable
from .observability import Metrics
from .outcomes import SlotOutcome
from .policy import PlannedDispatch
from .records import SlotRecord
from .settings import Settings

log = logging.getLogger("switchboard")


class SlotDispatch:
    def __init__(self, settings: Settings, store: DispatchStore, livekit: LiveKitDispatcher) -> None:
        self.settings = settings
        self.store = store
        self.livekit = livekit

    async def run(self, planned: PlannedDispatch, existing: SlotRecord | None, event_id: str,
                  metrics: Metrics, *, redispatch: str | None = None) -> SlotResult:
        """claim → dispatch → record for one slot. `redispatch` replaces a dispatch whose agent never came or left."""
        slot = planned.slot
        try:
            claim = await self.store.claim(planned, event_id, existing, redispatch=redispatch)
        except SlotAlreadyDispatched as exc:
            metrics.add("DuplicateDeliveries", 1)
            return SlotResult(slot, SlotOutcome.DUPLICATE,
                              detail=f"already {exc.record.status if exc.record else None}")
        except ClaimInProgress:
            metrics.add("ClaimsInProgress", 1)
            return SlotResult(slot, SlotOutcome.IN_PROGRESS, retry=True, detail="another delivery holds the claim")
        except SlotClosed as exc:
            return SlotResult(slot, SlotOutcome.CLOSED, detail=str(exc))
        except RoomCapReached as exc:
            if await self.store.record_rejection(planned, event_id, str(exc)):
                metrics.add("AgentsRejected", 1)
            return SlotResult(slot, SlotOutcome.REJECTED, detail=str(exc))

        started = time.perf_counter()
        try:
            if redispatch and claim.previous_dispatch_id:
                # The stale dispatch goes first, so its job can't still bring a second agent.
                await self.livekit.delete(claim.previous_dispatch_id, planned.room_name)
            elif claim.takeover:
                if claim.replacing:
                    # The owner before us took the slot over to replace that dispatch and may
                    # have died before deleting it: finish its job, never adopt it.
                    await self.livekit.delete(claim.replacing, planned.room_name)
                # An earlier attempt may have reached LiveKit before it died or timed out.
                found = await self.livekit.find(planned, not_this=claim.replacing)
                if found:
                    try:
                        await self.store.mark_dispatched(claim, found, adopted=True)
                    except LeaseLost:
                        # Whoever took the slot over looks for the same dispatch and adopts it.
                        return SlotResult(slot, SlotOutcome.LEASE_LOST, detail=found)
                    return SlotResult(slot, SlotOutcome.ADOPTED, detail=found)
                if claim.last_chance:
                    why = (f"the last of {claim.attempt} attempt(s) never finished and LiveKit holds no "
                           "dispatch it made")
                    try:
                        await self.store.mark_failed(claim, why, retryable=False)
                    except LeaseLost:
                        return SlotResult(slot, SlotOutcome.LEASE_LOST, detail=why)
                    metrics.add("DispatchFailures", 1)
                    return SlotResult(slot, SlotOutcome.FAILED, detail=why)
            dispatch_id = await self.livekit.create(planned)
        except LiveKitError as exc:
            retryable = isinstance(exc, LiveKitUnavailable)
            try:
                await self.store.mark_failed(claim, str(exc), retryable=retryable)
            except LeaseLost:
                # Taken over while LiveKit was failing us: the new owner decides now.
                return SlotResult(slot, SlotOutcome.LEASE_LOST, detail=str(exc))
            metrics.add("DispatchFailures", 1)
            log.warning("dispatch failed", extra={"slot": slot, "error": str(exc), "retryable": retryable})
            return SlotResult(slot, SlotOutcome.FAILED,
                              retry=retryable and claim.attempt < self.settings.max_dispatch_attempts, detail=str(exc))
        metrics.add("CreateDispatchLatency", (time.perf_counter() - started) * 1000, "Milliseconds")
        try:
            await self.store.mark_dispatched(claim, dispatch_id)
        except LeaseLost as exc:
            await self._withdraw(planned, dispatch_id, exc.record)
            return SlotResult(slot, SlotOutcome.LEASE_LOST, detail=dispatch_id)
        metrics.add("Redispatches" if redispatch else "Dispatches", 1)
        return SlotResult(slot, SlotOutcome.REDISPATCHED if redispatch else SlotOutcome.DISPATCHED, detail=dispatch_id)

    async def _withdraw(self, planned: PlannedDispatch, dispatch_id: str, current: SlotRecord | None) -> None:
        """Our lease ran out while LiveKit created our dispatch, and someone else owns the slot now.

        Our dispatch goes only once the slot has settled on another: it holds a different
        dispatch, or it is over. While it is claimed, or failed and about to be retried,
        its next owner may adopt ours (it looks in LiveKit first): the sweeper's collector
        decides later, as it does for any dispatch that is not its slot's.
        """
        log.error("lease lost after dispatch", extra={"slot": planned.slot, "dispatch_id": dispatch_id})
        if current is not None and (current.dispatch_id == dispatch_id or current.being_claimed):
            return
        try:
            await self.livekit.delete(dispatch_id, planned.room_name)
        except LiveKitError as exc:
            log.warning("could not withdraw a dispatch; the sweeper collects it",
                        extra={"slot": planned.slot, "dispatch_id": dispatch_id, "error": str(exc)})

    async def give_up_if_spent(self, record: SlotRecord, why: str, metrics: Metrics) -> bool:
        """If the slot has used its max_dispatch_attempts, settle it FAILED with `why` and say so."""
        attempts = record.attempts or 1  # (a record without attempts was never claimed: its first)
        if attempts < self.settings.max_dispatch_attempts:
            return False
        if await self.store.settle(record, Status.FAILED, f"{why}; gave up after {attempts} attempt(s)"):
            metrics.add("DispatchFailures", 1)
        return True

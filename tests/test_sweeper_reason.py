"""Why an agent did not join, as the sweeper records it, from what LiveKit and the log show.

On livekit-server v1.13.5 a dispatch shows no job alike in the three cases (measured:
a name no worker has; a worker that rejects without terminating; a worker stopped with
SIGSTOP, which LiveKit gives up on after 3 s): only an agent of the name seen joining
says a worker was there.
"""

from __future__ import annotations

from types import SimpleNamespace

from handler.records import SlotRecord, Status
from handler.sweeper import _why_not_joined

RECORD = SlotRecord(pk="ROOM#RM_a", sk="DISPATCH#driver", status=Status.DISPATCHED, agent_name="driver",
                    dispatched_at="2026-12-01T09:00:00.000Z")


def joined(**fields: str) -> SlotRecord:
    return SlotRecord(pk="ROOM#RM_b", sk="DISPATCH#driver", status=Status.JOINED, **fields)


def test_no_job_and_no_agent_of_the_name_ever_seen():
    why = _why_not_joined(RECORD, [], 15, None)
    assert why.startswith("no worker registered for agent_name driver, or none took the job in time")


def test_no_job_while_a_worker_of_the_name_takes_jobs_is_a_refusal_or_a_timeout():
    seen = joined(agent_identity="driver", room_name="other", joined_at="2026-12-01T09:00:02.000Z")
    why = _why_not_joined(RECORD, [], 15, seen)
    assert why.startswith("the driver worker refused the job or did not answer in time: at capacity, or stalled")
    assert "joined room other at 2026-12-01T09:00:02.000Z, after this dispatch" in why
    assert "no worker registered" not in why


def test_a_worker_seen_before_the_dispatch_is_named_as_such():
    seen = joined(agent_identity="driver", room_name="earlier", joined_at="2026-12-01T08:59:00.000Z")
    assert "before this dispatch" in _why_not_joined(RECORD, [], 15, seen)


def test_a_job_that_failed_or_never_joined():
    failed = SimpleNamespace(state=SimpleNamespace(error="boom"))
    assert _why_not_joined(RECORD, [failed], 15) == "the driver job failed: boom"
    quiet = SimpleNamespace(state=SimpleNamespace(error=""))
    assert _why_not_joined(RECORD, [quiet], 15) == "the driver agent did not join within 15 s of its dispatch"

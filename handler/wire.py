"""The names Switchboard and its agents agree on: participant attributes and job-metadata keys.

The handler reads what an agent sets and writes what an agent reads; the workers in
worker/ import these names from here rather than spelling them again. Standard library
only, and nothing else of handler/: the worker image carries this file (and
handler/__init__.py) and no other part of the handler (worker/Dockerfile).
An agent written elsewhere sets the same strings; the README's metadata contract lists them.
"""

from __future__ import annotations

# --- Participant attributes

# LiveKit's own: the agent name an agent participant was dispatched under.
AGENT_NAME_ATTRIBUTE = "lk.agent_name"
# Set by a worker from its job's dispatch id, it ties an agent participant to
# its dispatch with certainty. Workers that don't set it are matched by name.
DISPATCH_ID_ATTRIBUTE = "switchboard.dispatch_id"
# Set by an agent that leaves for good on purpose (the value says why), just before
# it disconnects. Without it, an agent's own disconnect is not taken as intent: a job
# LiveKit has ended, or a worker shutting down, also disconnects "client initiated".
DONE_ATTRIBUTE = "switchboard.done"

# --- Job metadata: what Switchboard adds to a rule's own metadata (policy.PlannedDispatch.job_metadata)

JOB_ROOM_NAME = "room_name"
JOB_ROOM_SID = "room_sid"
# The webhook event that caused the dispatch ("room_started", "participant_joined", ...).
JOB_TRIGGER = "trigger"
# The metadata list the agent's rule came from ("agents", "on_participant_joined").
JOB_RULE = "rule"
# The slot's sort key: which of the room's slots this job fills.
JOB_SLOT = "switchboard_slot"
# For a participant rule: who set it off.
JOB_PARTICIPANT_IDENTITY = "participant_identity"
JOB_METADATA_KEYS = frozenset({JOB_ROOM_NAME, JOB_ROOM_SID, JOB_TRIGGER, JOB_RULE, JOB_SLOT, JOB_PARTICIPANT_IDENTITY})

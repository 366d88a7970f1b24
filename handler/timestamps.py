"""The log's timestamps: one format written, one way read back.

Stored as sortable UTC strings with milliseconds (2026-11-21T11:45:17.336Z), so a
DynamoDB range condition on them is a time range; compared as epoch seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float) -> str:
    """A sortable UTC timestamp with milliseconds: 2026-11-21T11:45:17.336Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def epoch(timestamp: str) -> float:
    """Epoch seconds of a stored timestamp; 0.0 for none (a step never taken is as old as can be).

    Raises ValueError for text that is not one.
    """
    if not timestamp:
        return 0.0
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()

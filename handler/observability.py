"""Structured JSON logs and CloudWatch EMF metrics, both on stdout by default.

Not aws-lambda-powertools' Logger and Metrics: measured, they would add only
~4 ms to the handler's cold start (36 ms imported alone; BENCHMARKS.md), but the
two formats are a few dozen lines, and a dependency less is one less thing in
the function's bundle. EMF is a JSON line with an "_aws" block; CloudWatch turns
it into metrics, and locally it is just another log line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, TextIO

NAMESPACE = "Switchboard"

# The event id of the webhook being handled: every log line carries it.
correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if cid := correlation_id.get():
            out["correlation_id"] = cid
        out.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(out, default=str, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


# Where EMF documents go; None is stdout, where Lambda's CloudWatch agent reads them.
# A command whose stdout is its answer (`switchboard sweep --json`) moves them aside.
_metrics_stream: TextIO | None = None


def send_metrics_to(stream: TextIO | None) -> None:
    global _metrics_stream
    _metrics_stream = stream


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    # Access logs would print every request twice and carry nothing the handler's own line lacks.
    logging.getLogger("uvicorn.access").disabled = True


class Metrics:
    """Counts and timings for one webhook, flushed as one EMF document.

    `dimensions` (the sweeper's Project) add a second dimension set: each metric is then
    both per service, as the alarms watch it, and per service and project, which says which.
    """

    def __init__(self, service: str = "switchboard", dimensions: dict[str, str] | None = None) -> None:
        self._service = service
        self._dimensions = dict(dimensions or {})
        self._values: dict[str, tuple[float, str]] = {}

    def add(self, name: str, value: float, unit: str = "Count") -> None:
        old, _ = self._values.get(name, (0.0, unit))
        self._values[name] = (old + value, unit)

    def flush(self, **properties: Any) -> None:
        """One EMF line; `properties` ride along on it (not dimensions), so it can stand for a log line too."""
        if not self._values:
            return
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["service", *self._dimensions], ["service"]] if self._dimensions
                    else [["service"]],
                    "Metrics": [{"Name": n, "Unit": u} for n, (_, u) in self._values.items()],
                }],
            },
            "service": self._service,
            **self._dimensions,
        }
        document.update(properties)
        document.update({n: v for n, (v, _) in self._values.items()})
        if cid := correlation_id.get():
            document["correlation_id"] = cid
        (_metrics_stream or sys.stdout).write(json.dumps(document) + "\n")
        self._values.clear()


def emit(name: str, value: float, unit: str = "Count", service: str = "switchboard", **dimensions: str) -> None:
    """One metric as its own EMF document, dimensioned by service plus `dimensions`."""
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["service", *dimensions]],
                                   "Metrics": [{"Name": name, "Unit": unit}]}],
        },
        "service": service,
        **dimensions,
        name: value,
    }
    if cid := correlation_id.get():
        document["correlation_id"] = cid
    sys.stdout.write(json.dumps(document) + "\n")


def time_to_agent_ms(room: Any, participant: Any) -> float | None:
    """Room created → agent joined, both stamped by livekit-server (the join webhook carries both)."""
    created = room.creation_time_ms or room.creation_time * 1000
    joined = participant.joined_at_ms or participant.joined_at * 1000
    if not created or not joined or joined < created:
        return None
    return float(joined - created)


def record_time_to_agent(event: Any) -> None:
    """TimeToAgent (ms) for a join the pipeline just confirmed: the dashboard's p50/p95 and its alarm."""
    ms = time_to_agent_ms(event.room, event.participant)
    if ms is not None:
        emit("TimeToAgent", ms, "Milliseconds")


def record_sweep(actions: dict[str, int]) -> None:
    """SweepActions per action of one sweep pass (dimension `action`): the dashboard's sweeper widget."""
    for action, count in sorted(actions.items()):
        emit("SweepActions", count, action=action)

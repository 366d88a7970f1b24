"""The scheduled sweeper's Lambda entry point: one `switchboard sweep` pass per invocation.

No web adapter here: EventBridge invokes the plain Python runtime. The settings, the
LiveKit secret included, are read again on every invocation (sweeps.fresh_settings):
a warm sweeper follows a key rotation on its next run, once a minute, instead of
keeping the old key until its next cold start. The DynamoDB client and each
project's LiveKit session live for one pass, inside that pass's event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .observability import configure_logging, record_sweep
from .settings import Settings
from .sweeps import fresh_settings, sweep_projects

_logging_configured = False


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    global _logging_configured
    settings = fresh_settings()
    if not _logging_configured:
        configure_logging(settings.log_level)
        _logging_configured = True
    report = asyncio.run(_sweep(settings))
    record_sweep(report["actions"])
    if report["errors"]:
        # A failed invocation is what the Errors alarm and EventBridge's retry see. Every
        # project was swept before this: one project's failure never cut the others short.
        raise RuntimeError(f"sweep left {len(report['errors'])} error(s): {report['errors'][:3]}")
    return {"actions": report["actions"]}


async def _sweep(settings: Settings) -> dict[str, Any]:
    return (await sweep_projects(settings)).as_dict()

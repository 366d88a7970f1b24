"""The scheduled sweeper's Lambda entry point: one `switchboard sweep` pass per invocation.

No web adapter here: EventBridge invokes the plain Python runtime. Settings
(and the LiveKit secret) are read once per cold start; the DynamoDB client and
LiveKit session live for one pass, inside that pass's event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .observability import configure_logging, record_sweep
from .pipeline import open_pipeline
from .settings import Settings
from .sweeper import Sweeper

_settings: Settings | None = None


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    global _settings
    if _settings is None:
        _settings = Settings()
        configure_logging(_settings.log_level)
    report = asyncio.run(_sweep(_settings))
    record_sweep(report["actions"])
    if report["errors"]:
        # A failed invocation is what the Errors alarm and EventBridge's retry see.
        raise RuntimeError(f"sweep left {len(report['errors'])} slot(s) unsettled: {report['errors'][:3]}")
    return {"actions": report["actions"]}


async def _sweep(settings: Settings) -> dict[str, Any]:
    async with open_pipeline(settings) as pipeline:
        return (await Sweeper(pipeline).sweep()).as_dict()

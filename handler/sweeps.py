"""One sweep pass over every LiveKit project, each with its own credentials.

The Sweeper (sweeper.py) reconciles one project: its LiveKit, its records. This
runs one per project, side by side, so a project that is down, slow or refuses
its key costs only itself: its failure is an error of that project in the report
(and its Sweeper's `LiveKitListFailures`/`SweepErrors` metrics carry its Project
dimension), and every other project is swept as usual.

Each pass reads the settings again, secret included (aws_secrets.forget_secrets):
a warm sweeper (the scheduled Lambda, or `switchboard sweep --every`) follows a key
rotation on its next pass instead of calling LiveKit with a key that is gone until
its next cold start. That is one GetSecretValue per pass (once a minute on AWS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .aws_secrets import forget_secrets
from .claims import DispatchStore
from .pipeline import open_pipelines
from .settings import Settings
from .sweeper import Sweeper, SweepReport

log = logging.getLogger("switchboard.sweeper")


def fresh_settings() -> Settings:
    """The settings as they are now: the environment and the secret, read again."""
    forget_secrets()
    return Settings()


async def sweep_projects(settings: Settings, *, store: DispatchStore | None = None,
                         only: list[str] | None = None) -> SweepReport:
    """One pass over every project (or those in `only`), merged into one report.

    With several projects, each detail names its project and each error starts with it.
    """
    async with open_pipelines(settings, store=store, only=only) as pipelines:
        names = list(pipelines)
        results = await asyncio.gather(*(Sweeper(p).sweep() for p in pipelines.values()), return_exceptions=True)
    merged = SweepReport()
    several = len(settings.projects) > 1
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            # Nothing of one project's failure may stop the others; its type and message say what.
            log.exception("sweep of a project failed", extra={"project": name}, exc_info=result)
            report = SweepReport(errors=[f"the sweep failed: {type(result).__name__}: {str(result)[:300]}"])
        else:
            report = result
        merged.actions.update(report.actions)
        merged.details += [d | {"project": name} for d in report.details]
        merged.errors += [f"project {name}: {e}" if several else e for e in report.errors]
    return merged


async def sweep_every(interval: float, stop: asyncio.Event, *, store: DispatchStore,
                      settings: Callable[[], Settings] = fresh_settings, only: list[str] | None = None,
                      on_report: Callable[[SweepReport], None] = lambda _: None) -> None:
    """A pass every `interval` seconds until `stop` is set (`switchboard sweep --every`),
    each with the settings read again. Settings that no longer validate keep the last good
    ones for that pass, and say so in its report."""
    current: Settings | None = None
    while not stop.is_set():
        problem = ""
        try:
            current = settings()
        except (ValueError, RuntimeError) as exc:  # invalid, or the secret could not be read (SecretUnavailable)
            problem = f"the configuration is invalid, swept with the last good one: {exc}"
            if current is None:
                raise
        report = await sweep_projects(current, store=store, only=only)
        if problem:
            report.errors.insert(0, problem)
        on_report(report)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)

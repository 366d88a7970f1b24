"""Load counted in jobs: what the worker reports to livekit-server, which offers no jobs at 0.7 or more."""

from __future__ import annotations

from types import SimpleNamespace

from worker.server import jobs_load


def test_load_is_the_share_of_job_slots_in_use():
    assert jobs_load(SimpleNamespace(active_jobs=[]), max_jobs=10) == 0.0
    assert jobs_load(SimpleNamespace(active_jobs=["a", "b"]), max_jobs=10) == 0.2


def test_load_never_exceeds_one():
    assert jobs_load(SimpleNamespace(active_jobs=list(range(30))), max_jobs=10) == 1.0

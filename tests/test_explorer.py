"""The schedule explorer: thousands of orders of the same ordinary events, invariants after every step.

    make test       a bounded number of schedules (SWITCHBOARD_EXPLORE_SCHEDULES, default 30)
    make explore    many more: SWITCHBOARD_EXPLORE_SCHEDULES=10000, from SWITCHBOARD_EXPLORE_FIRST_SEED

Each schedule is one seed (tests/explorer/world.py says what it varies); a failure
prints its seed and trace, and `SWITCHBOARD_EXPLORE_SEEDS=1234 pytest tests/test_explorer.py`
replays it. Every seed that ever broke an invariant is kept in REGRESSIONS and runs
in every `make test`.
"""

from __future__ import annotations

import os

import pytest

from handler.dynamo import dynamodb_client
from handler.settings import Settings
from tests.explorer.world import World

pytestmark = pytest.mark.anyio

# Seeds that broke an invariant once (found by `make explore`), kept forever.
REGRESSIONS: list[int] = []


def _seeds() -> list[int]:
    if os.environ.get("SWITCHBOARD_EXPLORE_SEEDS"):
        return [int(s) for s in os.environ["SWITCHBOARD_EXPLORE_SEEDS"].split(",")]
    first = int(os.environ.get("SWITCHBOARD_EXPLORE_FIRST_SEED", "1"))
    return list(range(first, first + int(os.environ.get("SWITCHBOARD_EXPLORE_SCHEDULES", "30"))))


async def explore(seeds: list[int]) -> list[str]:
    broken: list[str] = []
    async with dynamodb_client(Settings()) as client:
        for seed in seeds:
            world = await World.open(seed, client)
            try:
                violations = await world.run()
            finally:
                await world.close(client)
            if violations:
                broken += violations + [f"  trace of seed {seed}: " + " ".join(world.baton.trace[-60:])]
    return broken


async def test_schedules_keep_every_invariant(aws):
    seeds = _seeds()
    broken = await explore(seeds)
    print(f"explored {len(seeds)} schedule(s), seeds {seeds[0]}..{seeds[-1]}: {len(broken)} finding line(s)")
    assert not broken, "\n".join(broken[:40])


@pytest.mark.skipif(not REGRESSIONS, reason="no seed has broken an invariant yet")
async def test_seeds_that_once_broke_an_invariant(aws):
    broken = await explore(REGRESSIONS)
    assert not broken, "\n".join(broken[:40])

"""A seeded scheduler that runs concurrent tasks one step at a time, in an order it chooses.

Every call that would reach another system (DynamoDB, LiveKit) first awaits
`Baton.pause(label)`. Exactly one task runs at any moment: the scheduler releases
one paused task, then waits until the loop is quiet again (every task paused, or
waiting on another task, as a gather's parent waits on its children) before it
picks the next. So a schedule is a sequence of choices made by one
`random.Random(seed)`, and the same seed replays the same schedule, real I/O
included (each step's I/O runs alone).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Paused:
    task: str
    label: str
    future: asyncio.Future[None]


@dataclass
class Baton:
    rng: random.Random
    paused: list[_Paused] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _futures: set[asyncio.Future[None]] = field(default_factory=set)
    _outside: set[asyncio.Task[object]] = field(default_factory=set)

    def __post_init__(self) -> None:
        # Tasks that were there before the schedule (the test's own) are not the schedule's.
        self._outside = set(asyncio.all_tasks())

    async def pause(self, label: str) -> None:
        """Wait here until the scheduler picks this task (called before each outside effect)."""
        task = asyncio.current_task()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.add(future)
        self.paused.append(_Paused(task.get_name() if task else "?", label, future))
        await future
        self._futures.discard(future)

    def ignore(self, task: asyncio.Task[object]) -> None:
        """A task of the test's own (a watchdog) that the schedule must not wait for."""
        self._outside.add(task)

    def _quiet(self) -> bool:
        for task in asyncio.all_tasks():
            if task in self._outside or task is asyncio.current_task() or task.done():
                continue
            waiting = task._fut_waiter  # type: ignore[attr-defined]  # what the task is blocked on, if anything
            if waiting is None:
                return False  # ready to run
            if waiting in self._futures or isinstance(waiting, asyncio.Task) or type(waiting).__name__ == "_GatheringFuture":
                continue
            return False  # in I/O, or asleep on a timer
        return True

    async def _until_quiet(self) -> None:
        await asyncio.sleep(0)
        while not self._quiet():
            await asyncio.sleep(0.0005)

    async def spawn(self, name: str, work: Coroutine[Any, Any, Any]) -> None:
        """Start `work` as a task that runs only when scheduled; returns once it is paused at its start."""

        async def run() -> None:
            try:
                await self.pause("start")
                await work
            except BaseException as exc:  # noqa: BLE001 - every escape is a finding
                self.errors.append(exc)

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await self._until_quiet()

    @property
    def busy(self) -> bool:
        return bool(self.paused)

    async def step(self) -> str:
        """Let one paused task (chosen at random) run until the loop is quiet again."""
        chosen = self.paused.pop(self.rng.randrange(len(self.paused)))
        self.trace.append(f"{chosen.task}:{chosen.label}")
        chosen.future.set_result(None)
        await self._until_quiet()
        return chosen.label

    async def drain(self) -> None:
        while self.paused:
            await self.step()

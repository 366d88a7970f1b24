"""How many jobs a worker carries at once, and the load it reports to LiveKit for them.

A job counts from the moment the worker decides to take it, not from when it runs.
livekit-agents 1.8.9 counts the same way, but with a guess: a job it has said yes to
and not yet launched weighs `load_threshold / max(num_idle_processes, 1)` while
nothing runs (AgentServer._get_effective_load). With one idle process (or none) that
is the whole threshold, so an idle worker turns down every offer that arrives while
its first job starts (seconds, in a job process that must first be spawned), and with
one worker per agent name LiveKit drops each of those jobs. Once jobs run, its guess
is the current load over the running jobs, which a job's start-up CPU inflates.

So livekit-agents' own shedding is off (load_threshold=inf, its `dev` default) and
this counts instead: a request beyond `max_jobs` is turned down here, without
terminating it, so livekit-server offers it to the next worker of the name, if any.
The load reported is what stops LiveKit offering: livekit-server offers jobs only
while some worker of the name reports less than its `agents.target_load` (0.7 unless
its config says otherwise; lower loads win more offers), so a worker with room
reports `target_load × jobs / max_jobs`, below the target, and a full one 1.0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class Capacity:
    def __init__(self, max_jobs: int, target_load: float) -> None:
        if max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
        self.max_jobs = max_jobs
        self.target_load = target_load
        self._running: Callable[[], int] = lambda: 0
        self._taking = 0  # said yes to (or deciding), not yet running

    def count_running(self, running: Callable[[], int]) -> None:
        """Where the running jobs are counted: the AgentServer's active_jobs, once it exists."""
        self._running = running

    @property
    def in_use(self) -> int:
        return self._running() + self._taking

    def has_room(self) -> bool:
        return self.in_use < self.max_jobs

    @contextlib.contextmanager
    def taking(self) -> Iterator[None]:
        """Hold a place for one job while it is accepted and launched.

        The caller checks has_room() and enters this with no await in between (one event
        loop answers every request), so concurrent offers can't both take the last place.
        A launched job is counted by count_running from the moment its executor holds
        it, so for the instant its start message is sent it counts twice: an error on
        the safe side, never a job uncounted.
        """
        self._taking += 1
        try:
            yield
        finally:
            self._taking -= 1

    def load(self) -> float:
        used = self.in_use
        if used >= self.max_jobs:
            return 1.0
        return self.target_load * used / self.max_jobs

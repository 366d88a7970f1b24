"""`make dev`: the whole local stack in the foreground, the role workers included; Ctrl-C stops it all.

    python -m infra.dev

The test of its Ctrl-C (tests/test_dev_stack.py) runs main() on its own ports and run dir.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .stack import CACHE, ROOT, Ports, Stack, handler_env, port_open
from .workers import is_worker, start_workers

# A worker that exits is started again, as ECS starts a new task (an rtc panic ends the
# whole process, every job in it: seen under load with job threads, issue 11), up to this
# many times; anything else exiting stops the stack.
WORKER_RESTARTS = 5

# How often `make dev`'s sweeper passes: a dispatch LiveKit lost is re-dispatched within
# about this plus the confirm deadline (SWITCHBOARD_CONFIRM_DEADLINE_SECONDS, 15 s).
DEV_SWEEP_EVERY = "5s"


@contextlib.contextmanager
def dev_stack(ports: Ports = Ports(), run_dir: Path = CACHE / "run" / "dev") -> Iterator[Stack]:
    with Stack(ports, run_dir) as stack:
        env = handler_env(ports)
        stack.start_dynamodb()
        stack.create_table(env)
        stack.start_handler(env)
        stack.start_sweeper(env, DEV_SWEEP_EVERY)
        stack.start_livekit()
        start_workers(stack)  # the agents: a dispatcher and a driver
        yield stack


def cli_export_line(ports: Ports) -> str:
    """One line to paste into another terminal: every variable the CLI needs for this stack."""
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in handler_env(ports).items())


def dev(ports: Ports | None = None, run_dir: Path = CACHE / "run" / "dev") -> int:
    """`make dev`, on `ports` and `run_dir`."""
    ports = ports or Ports()
    busy = [p for p in (ports.livekit, ports.dynamodb, ports.handler) if port_open(p)]
    if busy:
        print(f"ports {busy} are already in use: is another `make dev` running?", file=sys.stderr)
        return 1
    # `kill` and `timeout` send SIGTERM: stop the stack as cleanly as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with dev_stack(ports, run_dir) as stack:
        print(f"""
Switchboard local stack is up (logs in {stack.run_dir.relative_to(ROOT)}/):
  livekit-server  {ports.livekit_url}   (--dev: key devkey, secret secret)
  DynamoDB Local  {ports.dynamodb_url}   (table switchboard-dispatch)
  handler         {ports.handler_url}/webhook
  sweeper         `switchboard sweep --every {DEV_SWEEP_EVERY}` beside the handler: confirms each
                  dispatch, re-dispatches one whose agent has not joined within 15 s

  workers         dispatcher (Tim) and driver (Chris), local audio (espeak-ng + Silero VAD)

Create a room that gets agents:
  uv run python -m infra.room drill-1 '{{"profile": "drill"}}'
or watch the whole drill, from the dispatch log to who spoke when:
  make demo
Then, in another terminal, point the CLI at this stack (one line) and read what happened:
  {cli_export_line(ports)}
  uv run switchboard explain --room drill-1 --agent driver
  uv run switchboard ui    # the dispatch-log page on http://127.0.0.1:8090

Ctrl-C stops everything.""", flush=True)
        try:
            return _watch(stack)
        except KeyboardInterrupt:
            # A second Ctrl-C must not cut the stop short (a traceback, servers left behind):
            # it is bounded anyway, SIGTERM then SIGKILL after 10 s.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            print("stopping…", flush=True)
            return 0


def _watch(stack: Stack) -> int:
    """Until a service exits: a worker is started again (WORKER_RESTARTS), anything else ends it all."""
    restarts = 0
    while True:
        time.sleep(0.5)
        dead = [s for s in stack.services if not s.alive()]
        if not dead:
            continue
        workers = [s for s in dead if is_worker(s)]
        if len(workers) < len(dead) or restarts + len(workers) > WORKER_RESTARTS:
            for s in dead:
                print(f"{s.name} exited:\n{s.log_tail()}", file=sys.stderr)
            return 1
        for s in workers:
            restarts += 1
            code = s.process.returncode if s.process else None
            print(f"{s.name} exited (code {code}); started again, {restarts} of {WORKER_RESTARTS} restarts:\n"
                  f"{s.log_tail(12)}", file=sys.stderr, flush=True)
            s.start()


def main(ports: Ports | None = None, run_dir: Path = CACHE / "run" / "dev") -> int:
    try:
        return dev(ports, run_dir)
    except KeyboardInterrupt:
        # Ctrl-C while the stack was still starting: what had started is stopped already.
        # Exit 0, as after a Ctrl-C of the running stack: make has nothing to report.
        print("stopped before the stack was up", file=sys.stderr)
        return 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print("usage: python -m infra.dev", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())

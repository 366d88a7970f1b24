"""Run one role's worker.

    python -m worker dispatcher start     production: JSON logs, drain on SIGTERM
    python -m worker driver dev           development: readable logs, no drain
    LIVEKIT_AGENT_NAME=driver python -m worker start
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import NoReturn

from .roster import ROSTER, UnknownRole, get_role

COMMANDS = ("start", "dev")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__,
                                     usage="python -m worker [ROLE] {start,dev} [--log-level LEVEL]",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("words", nargs="+", metavar="ROLE",
                        help=f"role: one of {', '.join(ROSTER)} (default: $LIVEKIT_AGENT_NAME)")
    parser.add_argument("--log-level", help="overrides SWITCHBOARD_WORKER_LOG_LEVEL")
    args = parser.parse_args(argv)
    if len(args.words) > 2 or args.words[-1] not in COMMANDS:
        parser.error(f"expected [ROLE] {{{','.join(COMMANDS)}}}, got {' '.join(args.words)!r}")
    args.command = args.words[-1]
    args.role = args.words[0] if len(args.words) == 2 else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from livekit.agents.cli.log import setup_logging

    from .config import WorkerSettings
    from .lifecycle import serve

    settings = WorkerSettings()
    name = args.role or settings.agent_name
    if not name:
        print(f"no role: pass one of {', '.join(ROSTER)} or set LIVEKIT_AGENT_NAME", file=sys.stderr)
        return 2
    try:
        role = get_role(name)
    except UnknownRole as exc:
        print(exc, file=sys.stderr)
        return 2
    # Job processes inherit the environment, not our arguments.
    os.environ["LIVEKIT_AGENT_NAME"] = role.name
    settings = settings.model_copy(update={"agent_name": role.name,
                                           "log_level": (args.log_level or settings.log_level).upper()})
    devmode = args.command == "dev"
    setup_logging(settings.log_level, devmode=devmode, console=False)
    return asyncio.run(serve(settings, role, devmode=devmode))


def exit_now(code: int) -> NoReturn:
    """End the process with `code`, skipping the interpreter's finalization.

    With the thread executor, jobs ran livekit.rtc in this process, and its native
    runtime's threads can still deliver an event while the interpreter finalizes.
    CPython 3.11 ends such a thread with pthread_exit, whose forced unwind through
    the runtime's Rust frames aborts the whole process (SIGABRT, "panic in a function
    that cannot unwind"): a worker that drained cleanly then exits -6, and an
    orchestrator reads a crash. Seen once in CI, after "worker closed". By the time
    main() returns, everything worth finishing is finished (jobs, health server), so
    the logs are flushed and the process ends here.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())

"""Run one role's worker.

    python -m worker dispatcher start     production: JSON logs, drain on SIGTERM
    python -m worker driver dev           development: readable logs, no drain
    LIVEKIT_AGENT_NAME=driver python -m worker start
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

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


if __name__ == "__main__":
    sys.exit(main())
